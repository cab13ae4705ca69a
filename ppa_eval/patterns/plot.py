"""A pattern as a picture, like the PPA paper's Figure 1: rows are queries, columns keys, each
attended cell coloured by the part of the pattern that attends it (window, power positions,
sinks), the future left white; with a receptive field, a second panel beside it shows through how
many layers each position reaches the last one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ppa_eval.patterns.base import BlockPattern, PatternError
from ppa_eval.patterns.spec import format_spec

COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]


def plot_pattern(pattern: BlockPattern, length: int, path: str | Path, plot_size: int = 128,
                 layers: np.ndarray | None = None, within: int | None = None) -> Path:
    """Draw the mask over min(length, plot_size) positions, and `layers` (layers_to_last at `length`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    size = min(length, plot_size)
    q, kv = torch.arange(size)[:, None], torch.arange(size)[None, :]
    parts = pattern.mask_parts(size)
    cells = np.full((size, size), len(parts) + 1)  # masked
    for index, part in reversed(list(enumerate(parts.values(), start=1))):  # the first part that attends wins
        cells[np.broadcast_to(part(0, 0, q, kv).numpy(), cells.shape)] = index
    cells[(q < kv).numpy()] = 0  # the future
    colours = ["white", *COLOURS[:len(parts)], "#eeeeee"]
    panels = 1 if layers is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 6), dpi=120, squeeze=False)
    ax = axes[0, 0]
    ax.imshow(cells, cmap=ListedColormap(colours), vmin=0, vmax=len(colours) - 1, interpolation="nearest")
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    ax.set_title(f"{format_spec(pattern)}, L = {size}", fontsize=9)
    ax.legend(handles=[Patch(color=c, label=name) for c, name in zip(colours[1:], [*parts, "masked"])],
              loc="upper right", fontsize=8)
    if layers is not None:
        ax = axes[0, 1]
        reachable = layers >= 0
        ax.plot(np.flatnonzero(reachable), layers[reachable], ".", markersize=1.5)
        if within is not None:
            ax.axhline(within, color="#c44e52", linewidth=0.8, label=f"{within} layers")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_xlabel("key position")
        ax.set_ylabel(f"fewest layers to reach position {length - 1}")
        ax.set_title(f"receptive field at L = {length:,}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    try:
        fig.savefig(path)
    except OSError as error:
        raise PatternError(f"cannot write the plot {path}: {error.strerror or error}; "
                           "choose another --plot path") from None
    finally:
        plt.close(fig)
    return path
