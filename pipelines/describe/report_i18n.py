"""The QC report in Japanese (``binds run --lang ja`` or ``BINDS_REPORT_LANG=ja``, the unit's
setting): the same content, its fixed text and each check's meaning and remedy translated.

Figures, ids, file names and the experiment's own text (title) stay as they are.  A check
missing from :data:`JA_CHECKS` (a plugin modality's) keeps its English meaning.
"""

from __future__ import annotations

import dataclasses
import os

from pipelines.toolkit.qc import CheckResult, Verdict

LANGUAGES = ("en", "ja")


def report_language(lang: str | None = None) -> str:
    """``lang``, else ``BINDS_REPORT_LANG``, else English; an unknown language is English."""
    chosen = (lang or os.environ.get("BINDS_REPORT_LANG") or "en").lower()
    return chosen if chosen in LANGUAGES else "en"


#: check name -> (meaning, what to do on failure), in Japanese
JA_CHECKS: dict[str, tuple[str, str]] = {
    "FSC 0.143 crossing": (
        "ハーフマップの FSC が Nyquist より手前で 0.143 を下回ること。下回らない場合はハーフマップが"
        "独立でない（またはオーバーサンプリング）可能性があります",
        "ハーフマップが独立に精密化されたか、ボクセルサイズが正しいかを確認し、正しいハーフマップで再実行してください",
    ),
    "resolution": (
        "ゴールドスタンダード FSC 0.143 分解能が、この試料に期待される分解能に達していること（小さいほど良い）",
        "期待分解能に届かないことを依頼者に伝え、マスク・粒子数・experiment.yaml の期待値を確認してください",
    ),
    "spectra read": (
        "すべての測定ファイルからスペクトルが読み取れたこと",
        "mzML ファイルが完全か確認してください（装置ソフトウェアから再出力）",
    ),
    "ion suppression": (
        "イオンサプレッションを受けた MS1 スキャンの割合（トラップを満たす化合物により、その時間に溶出するイオンが"
        "低く測定されます。場所は runs.parquet に記録）",
        "試料を希釈するか注入量を減らして再測定し、影響を受けた保持時間を依頼者に伝えてください",
    ),
    "targets detected": (
        "リストした標的化合物のうち、すべての測定で（10 ppm 以内で）検出された割合",
        "標的リスト（m/z、付加イオン、極性）と装置の校正を確認してください",
    ),
    "target mass error": (
        "検出された標的の質量誤差の最大値：質量校正が良好であること",
        "質量分析計を再校正して再測定してください",
    ),
    "cells kept": (
        "QC フィルタ（遺伝子数・カウント・ミトコンドリア比率）の後に細胞が残ること",
        "カウント行列の細胞判定と experiment.yaml の QC 閾値を確認してください",
    ),
    "cells removed by QC": (
        "QC フィルタで除かれた入力細胞の割合。30 % を超える場合は損傷細胞・空のドロップレット、"
        "または試料に合わない閾値を示します",
        "QC バイオリン図を確認し、experiment.yaml の閾値を調整するか、試料の品質が低いことを依頼者に伝えてください",
    ),
    "samples": (
        "カウント表に少なくとも 1 つの試料があること",
        "カウント表の列と experiment.yaml の試料を確認してください",
    ),
    "genes kept": (
        "発現フィルタの後に遺伝子が残ること",
        "カウント表が空またはすべて 0 でないか確認してください",
    ),
    "plate QC (Z')": (
        "すべてのプレート測定が Z' / シグナル・バックグラウンド比 / コントロール CV の基準を満たすこと："
        "アッセイの窓がヒットとノイズを分けられること",
        "プレートごとの理由は plates.parquet の qc_notes を参照し、不合格プレートを再測定するか、"
        "experiment.yaml のコントロール名・閾値を修正してください",
    ),
    "dose-response fits": (
        "すべての 4PL 用量反応曲線のフィッティングが収束すること",
        "収束しなかった化合物の用量反応図を確認してください（用量が少ない、平坦、ノイズが多い）",
    ),
}

#: fixed text of the page: (English, Japanese), replaced with the surrounding markup so a
#: title or a file name that happens to hold the same words is never touched
JA_PHRASES: tuple[tuple[str, str], ...] = (
    ("<html lang='en'>", "<html lang='ja'>"),
    ("<h2>What was measured</h2>", "<h2>測定の内容</h2>"),
    ("<h2>Quality checks</h2>", "<h2>品質チェック</h2>"),
    ("<h3>Key figures</h3>", "<h3>主な数値</h3>"),
    ("<h2>Figures</h2>", "<h2>図</h2>"),
    ("<h2>How it was processed</h2>", "<h2>処理の内容</h2>"),
    ("<h2>What was published</h2>", "<h2>公開された内容</h2>"),
    ("<h2>How to access it</h2>", "<h2>アクセス方法</h2>"),
    ("<h2>How to cite it</h2>", "<h2>引用方法</h2>"),
    ("<th>check</th>", "<th>チェック</th>"),
    ("<th>result</th>", "<th>結果</th>"),
    ("<th>value</th>", "<th>値</th>"),
    ("<th>criterion</th>", "<th>基準</th>"),
    ("<th>what it means</th>", "<th>意味</th>"),
    ("<th>figure</th>", "<th>項目</th>"),
    ("<th>Support unit</th>", "<th>支援ユニット</th>"),
    ("<th>Instrument</th>", "<th>装置</th>"),
    ("<th>Acquired</th>", "<th>測定日</th>"),
    ("<th>Samples</th>", "<th>試料</th>"),
    ("<th>Raw files</th>", "<th>生データ</th>"),
    ("<th>step</th>", "<th>ステップ</th>"),
    ("<th>status</th>", "<th>状態</th>"),
    ("<th>seconds</th>", "<th>秒</th>"),
    ("<th>CPU s</th>", "<th>CPU 秒</th>"),
    ("<th>threads</th>", "<th>スレッド</th>"),
    ("<th>memory limit MB</th>", "<th>メモリ上限 MB</th>"),
    ("<th>max RSS MB</th>", "<th>最大 RSS MB</th>"),
    ("<th>entry</th>", "<th>項目</th>"),
    ("<th>files</th>", "<th>ファイル数</th>"),
    ("<th>size</th>", "<th>サイズ</th>"),
    ("<b>What to do:</b>", "<b>対応：</b>"),
    ("n/a (not given in experiment.yaml)", "n/a（experiment.yaml に記載なし）"),
    ("n/a (not defined for this data)", "n/a（このデータでは定義されない）"),
    (
        "<p class='sub'>Every step the last Snakemake invocation ran",
        "<p class='sub'>最後の Snakemake 実行の各ステップ",
    ),
    ("<p>Location: ", "<p>場所："),
)


def localise_verdict(verdict: Verdict, lang: str) -> Verdict:
    """``verdict`` with each check's meaning and remedy in ``lang`` (when translated)."""
    if lang != "ja":
        return verdict
    checks = []
    for c in verdict.checks:
        meaning, on_fail = JA_CHECKS.get(c.name, (c.meaning, c.on_fail))
        checks.append(dataclasses.replace(c, meaning=meaning, on_fail=on_fail))
    return dataclasses.replace(verdict, checks=tuple(checks))


def summary(verdict: Verdict, lang: str) -> str:
    """The verdict line in ``lang``."""
    if lang != "ja":
        return verdict.summary()
    n = len(verdict.checks)
    failed: list[CheckResult] = verdict.failed
    if verdict.status == "fail":
        text = f"QC 不合格：{n} 項目中 {len(failed)} 項目が不合格（{'、'.join(c.name for c in failed)}）"
    elif verdict.status == "pass":
        done = sum(c.result == "pass" for c in verdict.checks)
        text = f"QC 合格：{n} 項目中 {done} 項目が合格" + (
            f"、{n - done} 項目は該当なし" if done < n else ""
        )
    elif n:
        text = f"QC 判定なし：{n} 項目のいずれもこのバージョンに該当しません"
    else:
        text = "QC 判定なし：このモダリティには合否基準がありません"
    return f"{text}；{verdict.note}" if verdict.note else text


def translate_page(page: str, lang: str) -> str:
    if lang != "ja":
        return page
    for en, ja in JA_PHRASES:
        page = page.replace(en, ja)
    return page
