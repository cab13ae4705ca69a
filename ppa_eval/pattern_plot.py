"""The PPA mask as a picture, like the paper's Figure 1: rows are queries, columns keys; window
cells and power cells in two colours, keys no query may see (the future) left white."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ppa_eval.pattern import PowerPattern, power_positions


def plot_mask(pattern: PowerPattern, length: int, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    window = np.zeros(length + 1, dtype=bool)
    window[pattern.window_positions(length)] = True
    power = np.zeros(length + 1, dtype=bool)
    power[power_positions(pattern.power, length)] = True
    j = np.arange(length)[:, None] - np.arange(length)[None, :] + 1  # relative position of key k for query i
    j_valid = np.clip(j, 0, length)
    cells = np.where(j < 1, 0, np.where(window[j_valid], 1, np.where(power[j_valid], 2, 3)))
    colours = ListedColormap(["white", "#4c72b0", "#dd8452", "#eeeeee"])
    fig, ax = plt.subplots(figsize=(6, 6), dpi=120)
    ax.imshow(cells, cmap=colours, vmin=0, vmax=3, interpolation="nearest")
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    ax.set_title(f"PPA mask, p = {pattern.power}, w = {pattern.window}, L = {length}")
    ax.legend(handles=[Patch(color="#4c72b0", label=f"window (j <= {pattern.window})"),
                       Patch(color="#dd8452", label="power positions"),
                       Patch(color="#eeeeee", label="masked")],
              loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
