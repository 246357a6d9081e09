# Metabolomics (LC-MS) workflow: every mzML of the run folder -> Parquet spectra and
# chromatograms (one job per file) -> features per run -> feature matrix across runs ->
# targeted quantification (when a targets CSV is given) -> QC.  Processing lives in
# pipelines.modalities.metabolomics; the rules only call it.


include: "common.smk"
include: "convert.smk"


if MET_FEATURES:

    include: "features.smk"


if MET_TARGETS:

    include: "targets.smk"


include: "qc.smk"
