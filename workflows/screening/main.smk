# Screening plates workflow (issue 6): reader exports / cellHTS2 screens -> wells, plate QC,
# hits, dose-response fits, QC plots, metrics.  Rules are thin: each calls one function of
# pipelines.modalities.screening through pipelines.toolkit.smk.run_step.
#
#   read_batch (xN, batch_size plate files each) -> score (+ dose-response fits) -> plots -> metrics

include: "common.smk"
include: "read.smk"
include: "score.smk"
include: "report.smk"
