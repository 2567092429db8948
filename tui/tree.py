"""The process tree of the TUI's table (pure): parents, depth-first lines, folding, and the
ancestors a filtered tree keeps.

Rows are addressed by their place in one fixed order (host, then pid) rather than by key:
100,000 keys hashed in sort order cost more than the sort itself.
"""

from __future__ import annotations

from typing import NamedTuple

Key = tuple[str, int]  # (host, pid)
ROOT = -1  # the parent of a row that has none listed


class Parents(NamedTuple):
    """Each key's place in the order given, each row's parent by that place (or ROOT), and
    the places of kernel threads (kthreadd, pid 2, and its threads: no command line)."""

    where: dict[Key, int]
    parents: list[int]
    kernel: set[int]


def parent_positions(order: list[Key], rows: dict[Key, dict]) -> Parents:
    """Each row's parent: the listed row of its ppid, if that one is older (a parent always
    is, so a younger one is a stranger that reused the pid; this keeps the tree acyclic)."""
    where = {key: position for position, key in enumerate(order)}
    parents, kernel = [ROOT] * len(order), set()
    for position, key in enumerate(order):
        row = rows[key]
        host, pid = key
        ppid = row.get("ppid", 0)
        above = rows.get((host, ppid))
        if above is not None:
            theirs, mine = above.get("started", 0), row.get("started", 0)
            if theirs < mine or (theirs == mine and ppid < pid):
                parents[position] = where[(host, ppid)]
        if is_kernel_thread(row):
            kernel.add(position)
    return Parents(where, parents, kernel)


def is_kernel_thread(row: dict) -> bool:
    """kthreadd (pid 2) or one of its threads: no command line."""
    return row.get("cmdline") is None and 2 in (row["pid"], row.get("ppid", 0))


def depth_first(order: list[Key], tree: Parents, ranked: list[int], show_kernel: bool) -> list:
    """The whole tree, every branch open, siblings in the order of `ranked` (places sorted
    as the table is), kernel threads and their branches left out unless shown: (key, depth,
    has children, False) for each line."""
    children: list[list[int] | None] = [None] * len(order)
    roots, parents, hidden = [], tree.parents, set() if show_kernel else tree.kernel
    for position in ranked:
        if position in hidden:
            continue
        parent = parents[position]
        if parent >= 0:
            siblings = children[parent]
            if siblings is None:
                children[parent] = [position]
            else:
                siblings.append(position)
        else:
            roots.append(position)
    lines: list[tuple] = []
    append, branches = lines.append, [iter(roots)]
    while branches:
        for position in branches[-1]:
            kids = children[position]
            append((order[position], len(branches) - 1, kids is not None, False))
            if kids is not None:
                branches.append(iter(kids))
                break
        else:
            branches.pop()
    return lines


def visible_lines(preorder: list[tuple], shown: set[Key] | None, collapsed: set[Key]) -> list:
    """The tree's lines with folded branches closed and rows not `shown` left out (`shown`
    holds the ancestors of what it holds, so a line's children are the deeper lines after
    it): (key, depth, has children shown, folded) for each."""
    if shown is None and not collapsed:
        return preorder
    lines: list[tuple] = []
    folded_at = None  # the depth of the folded line whose branch is being skipped
    for key, depth, has_children, _ in preorder:
        if folded_at is not None:
            if depth > folded_at:
                if shown is not None and key in shown:  # so is its ancestor, a child
                    lines[-1] = (*lines[-1][:2], True, True)
                continue
            folded_at = None
        if shown is not None and key not in shown:
            continue
        if lines and lines[-1][2] is None:  # the line before: its children are known now
            lines[-1] = (*lines[-1][:2], depth > lines[-1][1], False)
        if key in collapsed and has_children:
            folded_at = depth
            lines.append((key, depth, shown is None, shown is None))
        else:
            lines.append((key, depth, None if shown is not None else has_children, False))
    if lines and lines[-1][2] is None:
        lines[-1] = (*lines[-1][:2], False, False)
    return lines


def with_ancestors(keys: set[Key], order: list[Key], tree: Parents) -> set[Key]:
    """The keys plus their ancestors, so a filtered tree keeps its shape."""
    shown, where, parents = set(keys), tree.where, tree.parents
    for key in keys:
        parent = parents[where[key]]
        while parent >= 0 and order[parent] not in shown:
            shown.add(order[parent])
            parent = parents[parent]
    return shown
