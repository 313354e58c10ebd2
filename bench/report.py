"""Best-of-N summaries, the side-by-side table, and the goals checked against it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from bench.contenders import CHARLIECLOUD, CONVERT, FLOOR, OURS_COLD, OURS_WARM, PULL, Outcome
from bench.measure import Sample

GOAL_VS_FLOOR = 1.3  # ours cold / floor at most
GOAL_VS_CHARLIECLOUD = 1.25  # charliecloud / ours cold at least
GOAL_RSS_MIB = 150.0  # ours cold, largest process
GOAL_WARM_S = 1.0

ROWS = (
    (FLOOR, None, "floor: mksquashfs of the extracted tree"),
    (CHARLIECLOUD, PULL, "charliecloud: ch-image pull"),
    (CHARLIECLOUD, CONVERT, "charliecloud: ch-convert to squashfs"),
    (CHARLIECLOUD, None, "charliecloud: pull + convert"),
    (OURS_COLD, None, "ours: shifter-imagegw convert, cold cache"),
    (OURS_WARM, None, "ours: same, warm (image present)"),
)


@dataclass(frozen=True)
class Summary:
    """Best of N: the fastest wall time and lowest CPU time; the highest memory seen."""

    best_s: float
    runs_s: tuple[float, ...]
    cpu_s: float
    max_rss_mib: float
    tree_rss_mib: float
    image_bytes: int | None
    others_cpu_s: float  # CPU the rest of the machine used during the best run
    cpu_wait_s: float  # the best run's time runnable but waiting for a CPU

    @classmethod
    def of(cls, samples: Sequence[Sample], image_bytes: int | None) -> Summary:
        best = min(samples, key=lambda s: s.wall_s)
        return cls(
            best_s=best.wall_s,
            runs_s=tuple(s.wall_s for s in samples),
            cpu_s=min(s.cpu_s for s in samples),
            max_rss_mib=max(s.max_rss_kib for s in samples) / 1024,
            tree_rss_mib=max(s.tree_rss_kib for s in samples) / 1024,
            image_bytes=image_bytes,
            others_cpu_s=best.others_cpu_s,
            cpu_wait_s=best.cpu_wait_s,
        )


def summarize(outcomes: Sequence[Outcome], step: str | None) -> Summary:
    if step is None:
        return Summary.of([o.sample for o in outcomes], outcomes[-1].image_size)
    return Summary.of([o.steps[step] for o in outcomes], None)


@dataclass(frozen=True)
class Goal:
    text: str
    value: str
    met: bool


def goals(by_row: Mapping[tuple[str, str | None], Summary]) -> list[Goal]:
    floor = by_row[(FLOOR, None)].best_s
    cold = by_row[(OURS_COLD, None)]
    charliecloud = by_row[(CHARLIECLOUD, None)].best_s
    warm = by_row[(OURS_WARM, None)]
    vs_floor, vs_charliecloud = cold.best_s / floor, charliecloud / cold.best_s
    return [
        Goal(f"ours / floor <= {GOAL_VS_FLOOR}x", f"{vs_floor:.2f}x", vs_floor <= GOAL_VS_FLOOR),
        Goal(f"charliecloud / ours >= {GOAL_VS_CHARLIECLOUD}x", f"{vs_charliecloud:.2f}x",
             vs_charliecloud >= GOAL_VS_CHARLIECLOUD),
        Goal(f"ours peak RSS < {GOAL_RSS_MIB:.0f} MiB (largest process)",
             f"{cold.max_rss_mib:.0f} MiB (tree sum {cold.tree_rss_mib:.0f} MiB)",
             cold.max_rss_mib < GOAL_RSS_MIB),
        Goal(f"ours warm re-pull < {GOAL_WARM_S:.0f} s", f"{warm.best_s:.2f} s",
             warm.best_s < GOAL_WARM_S),
    ]


def _ratio(summary: Summary, floor: float, ours: float, contender: str, step: str | None) -> str:
    if step is not None or contender == OURS_WARM:
        return ""
    parts = [f"{summary.best_s / floor:.2f}x floor"]
    if contender == CHARLIECLOUD:
        parts.append(f"{summary.best_s / ours:.2f}x ours")
    return ", ".join(parts)


def table(
    image_label: str,
    by_row: Mapping[tuple[str, str | None], Summary],
    entries: Mapping[str, int],
) -> list[str]:
    """Markdown rows for one input image, then its goals."""
    floor = by_row[(FLOOR, None)].best_s
    ours = by_row[(OURS_COLD, None)].best_s
    lines = [
        f"**{image_label}**",
        "",
        "| contender | best wall (s) | all runs (s) | CPU (s) | peak RSS, largest process "
        "(MiB) | peak RSS, tree sum (MiB) | image (MB) | entries | ratio | best run: waited "
        "for a CPU / others' CPU (s) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for contender, step, label in ROWS:
        summary = by_row[(contender, step)]
        size = f"{summary.image_bytes / 1e6:.1f}" if summary.image_bytes else ""
        count = str(entries[contender]) if step is None and contender in entries else ""
        runs = " ".join(f"{s:.2f}" for s in summary.runs_s)
        lines.append(
            f"| {label} | {summary.best_s:.2f} | {runs} | {summary.cpu_s:.1f} | "
            f"{summary.max_rss_mib:.0f} | {summary.tree_rss_mib:.0f} | {size} | {count} | "
            f"{_ratio(summary, floor, ours, contender, step)} | "
            f"{summary.cpu_wait_s:.1f} / {summary.others_cpu_s:.1f} |"
        )
    lines += ["", "| goal | result | |", "|---|---|---|"]
    lines += [f"| {g.text} | {g.value} | {'met' if g.met else 'MISSED'} |" for g in goals(by_row)]
    return lines


def as_json(by_row: Mapping[tuple[str, str | None], Summary]) -> list[dict[str, object]]:
    return [
        {"contender": contender, "step": step, **asdict(summary)}
        for (contender, step), summary in by_row.items()
    ]
