"""The latency sweep's plot: p50 and p99 send-to-receive latency against the
offered message rate, for P, B and U (matplotlib, no display needed)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLOURS = {"P": "tab:blue", "B": "tab:orange", "U": "tab:green"}
NAMES = {"P": "P (ours)", "B": "B (Channels tutorial)", "U": "U (websockets relay)"}


def latency_plot(sweep, path, caption):
    """Draw `sweep` (bench.sweep.latency_sweep) to the PNG `path`. Points
    where a target lost messages, had a socket fail or was not offered the
    full rate are not drawn (their latencies mean nothing); the reasons each
    target stopped are listed under the plot with `caption`."""
    fig, ax = plt.subplots(figsize=(11, 6), dpi=120)
    for name, points in sweep["points"].items():
        drawn = [p for p in points if p["valid"]]
        if not drawn:
            continue
        rates = [p["rate"] for p in drawn]
        colour = COLOURS.get(name)
        ax.plot(rates, [p["p99_ms"] for p in drawn], "o-", color=colour, label=f"{NAMES.get(name, name)} p99")
        ax.plot(
            rates, [p["p50_ms"] for p in drawn], "s--", color=colour, label=f"{NAMES.get(name, name)} p50", alpha=0.8
        )
    limit = sweep["p99_limit_ms"]
    ax.axhline(limit, color="grey", linestyle=":", linewidth=1)
    ax.annotate(
        f"p99 limit {limit:.0f} ms", (0.01, limit), xycoords=("axes fraction", "data"), va="bottom", color="grey"
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(top=max(ax.get_ylim()[1], 1.6 * limit))  # the limit line in view, with room for its label
    ax.set_xticks(sweep["rates"], [str(r) for r in sweep["rates"]])
    ax.minorticks_off()
    ax.set_xlabel("offered load, messages/s in total (open loop)")
    ax.set_ylabel("send-to-receive latency, ms (log)")
    title = f"Chat latency against load: {sweep['rooms']} rooms, {sweep['seconds_per_point']:g} s per point"
    ax.set_title(title + f", median of {sweep['repetitions']}" if sweep["repetitions"] > 1 else title)
    ax.grid(True, which="major", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside: never over a curve
    stops = [f"{NAMES.get(n, n)}: {reason}" for n, reason in sweep["stopped"].items()]
    footer = "\n".join(
        ["Stopped: " + "; ".join(stops) if stops else "No target stopped before the last rate.", caption]
    )
    fig.text(0.01, 0.01, footer, fontsize="x-small", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
