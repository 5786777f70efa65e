"""Maze layouts of the Brax maze tasks, and the MJCF walls built from them.

A layout is a tuple of strings, one per grid row: ``#`` wall, ``S`` the start cell, ``G`` a goal
cell, ``F`` a goal cell that is also in the ``far`` evaluation split, ``.`` free floor. Cell
``(row, col)`` is centred at world ``(x, y) = (row * cell_size, col * cell_size)``: the convention
of the JaxGCRL / RL1000 code, so goal coordinates match the reference.

Sources: ``U_MAZE``, ``U4_MAZE``, ``U5_MAZE`` and ``BIG_MAZE`` with their ``far`` cells are the
layouts of the JaxGCRL benchmark (``ant_maze.py`` in JaxGCRL and its RL1000 fork: the far cells are
the goal cells of their ``*_EVAL`` layouts). ``HARDEST_MAZE`` is JaxGCRL's too, but the reference
has no evaluation layout for it: here its ``far`` cells are the goal cells whose shortest path from
the start is at least 12 cells long (the longest is 15).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Iterable

import numpy as np

U_MAZE = (
    "#####",
    "#SGG#",
    "###G#",
    "#FFF#",
    "#####",
)
U4_MAZE = (
    "#####",
    "#GGG#",
    "#S#G#",
    "###G#",
    "#F#G#",
    "#FFF#",
    "#####",
)
U5_MAZE = (
    "########",
    "#GGGGGG#",
    "#S####G#",
    "######G#",
    "#F####F#",
    "#FFFFFF#",
    "########",
)
BIG_MAZE = (
    "########",
    "#SG##FF#",
    "#GG#GFF#",
    "##GGG###",
    "#GG#GGG#",
    "#G#FG#F#",
    "#GFF#FF#",
    "########",
)
HARDEST_MAZE = (
    "############",
    "#SGGG#GGGFF#",
    "#G##G#G#F#F#",
    "#GGGGGG#FFF#",
    "#G####G###F#",
    "#GG#F#GGGFF#",
    "##G#F#G#F###",
    "#GG#FFG#FFF#",
    "############",
)

LAYOUTS = {
    "u_maze": U_MAZE,
    "u4_maze": U4_MAZE,
    "u5_maze": U5_MAZE,
    "big_maze": BIG_MAZE,
    "hardest_maze": HARDEST_MAZE,
}

WALL_HEIGHT = 0.5
"""Wall height as a fraction of the cell size (the reference's ``MAZE_HEIGHT``)."""


@dataclasses.dataclass(frozen=True)
class Maze:
    """A parsed layout at a given cell size. Arrays are numpy (static data of the task)."""

    name: str
    layout: tuple[str, ...]
    cell_size: float
    walls: np.ndarray  # bool [rows, cols]
    start_cell: tuple[int, int]
    goal_cells: np.ndarray  # int [N, 2] (row, col)
    far_cells: np.ndarray  # int [M, 2] (row, col), a subset of goal_cells

    @property
    def start_xy(self) -> np.ndarray:
        return self.cell_center(np.asarray(self.start_cell))

    def cell_center(self, cells: np.ndarray) -> np.ndarray:
        """World ``(x, y)`` of the centre of ``cells [..., 2]`` (row, col)."""
        return np.asarray(cells, dtype=np.float32) * self.cell_size

    def cell_of(self, xy: np.ndarray) -> np.ndarray:
        """The (row, col) of the cell holding world point ``xy [..., 2]``."""
        return np.floor(np.asarray(xy) / self.cell_size + 0.5).astype(np.int64)

    def is_wall(self, xy: np.ndarray) -> np.ndarray:
        """Whether world points ``xy [..., 2]`` lie in a wall cell (outside the grid counts as wall)."""
        rc = self.cell_of(xy)
        rows, cols = self.walls.shape
        inside = (rc[..., 0] >= 0) & (rc[..., 0] < rows) & (rc[..., 1] >= 0) & (rc[..., 1] < cols)
        r = np.clip(rc[..., 0], 0, rows - 1)
        c = np.clip(rc[..., 1], 0, cols - 1)
        return ~inside | self.walls[r, c]


def parse(name: str, layout: tuple[str, ...], cell_size: float) -> Maze:
    """Parse a layout (see the module docstring); it must be closed by walls and have one start."""
    if len({len(r) for r in layout}) != 1:
        raise ValueError(f"maze {name!r}: rows of unequal length")
    grid = np.array([list(r) for r in layout])
    if set(np.unique(grid)) - set("#SGF."):
        raise ValueError(f"maze {name!r}: unknown cell symbols {set(np.unique(grid)) - set('#SGF.')}")
    walls = grid == "#"
    if not (walls[0].all() and walls[-1].all() and walls[:, 0].all() and walls[:, -1].all()):
        raise ValueError(f"maze {name!r}: a layout must be closed by walls on every side")
    starts = np.argwhere(grid == "S")
    if len(starts) != 1:
        raise ValueError(f"maze {name!r}: needs exactly one start cell 'S'")
    goals = np.argwhere((grid == "G") | (grid == "F"))
    far = np.argwhere(grid == "F")
    if not len(goals) or not len(far):
        raise ValueError(f"maze {name!r}: needs goal cells 'G' and far goal cells 'F'")
    return Maze(name, tuple(layout), float(cell_size), walls, tuple(int(v) for v in starts[0]), goals, far)


def path_lengths(maze: Maze) -> dict[tuple[int, int], int]:
    """Shortest path length (in cells, 4-connected) from the start to every reachable free cell."""
    dist = {maze.start_cell: 0}
    queue = collections.deque([maze.start_cell])
    while queue:
        r, c = queue.popleft()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            n = (r + dr, c + dc)
            if not maze.walls[n] and n not in dist:
                dist[n] = dist[(r, c)] + 1
                queue.append(n)
    return dist


def touchable_wall_cells(walls: np.ndarray) -> np.ndarray:
    """Wall cells ``[K, 2]`` (row, col) with a free cell among their 8 neighbours.

    Only these can be touched (a free cell's corner touches its diagonal neighbours); the others
    are buried in wall and need no collision geometry."""
    rows, cols = walls.shape
    padded = np.pad(~walls, 1, constant_values=False)
    near_free = np.zeros_like(walls)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            near_free |= padded[1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols]
    return np.argwhere(walls & near_free)


def wall_half_size(maze: Maze, height: float | None = None) -> np.ndarray:
    """Half extents (x, y, z) of one wall box; ``height`` defaults to ``WALL_HEIGHT * cell_size``."""
    h = WALL_HEIGHT * maze.cell_size if height is None else height
    return np.array([maze.cell_size / 2, maze.cell_size / 2, h / 2])


def wall_geoms_xml(maze: Maze, contype: int = 1, conaffinity: int = 1, height: float | None = None) -> Iterable[dict[str, str]]:
    """Attributes of the MJCF ``<geom>`` boxes of the walls: one box per touchable wall cell.

    One box per cell (rather than merged rectangles) keeps every wall's bounding sphere small, so a
    broad phase on bounding spheres (:func:`max_geom_pairs`) can skip far walls."""
    hx, hy, hz = wall_half_size(maze, height)
    for r, c in touchable_wall_cells(maze.walls):
        yield {
            "name": f"wall_{r}_{c}",
            "type": "box",
            "pos": f"{r * maze.cell_size:.6g} {c * maze.cell_size:.6g} {hz:.6g}",
            "size": f"{hx:.6g} {hy:.6g} {hz:.6g}",
            "contype": str(contype),
            "conaffinity": str(conaffinity),
            "condim": "3",
            "rgba": "0.7 0.5 0.3 1",
        }


def max_geom_pairs(maze: Maze, body_rbounds: Iterable[float], height: float | None = None) -> int:
    """A number of (body geom, wall) pairs that MJX's broad phase may keep without missing a contact.

    MJX's ``max_geom_pairs`` keeps, per collision function, the pairs with the smallest
    ``|c1 - c2| - (r1 + r2)`` (centres, bounding-sphere radii). A touching pair has that ``<= 0``.
    The wall centres within ``R = r_wall + r_geom`` of a geom lie on the cell grid, so along each
    axis at most ``floor(2 R / cell) + 1`` of them; their product bounds the walls one geom can
    touch, and the sum over the body geoms bounds every pair with ``<= 0``: keeping that many never
    drops a contact. For the ant in cells of 4 it is 4 walls per geom (of 16-55 wall boxes)."""
    r_wall = float(np.linalg.norm(wall_half_size(maze, height)))
    total = 0
    for r in body_rbounds:
        per_axis = int(np.floor(2 * (r_wall + r) / maze.cell_size)) + 1
        total += per_axis**2
    return total
