"""The browser's folder tree: the library's folders as a tree with photo counts (from one GROUP BY), and the
import roots that "Rescan" walks."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ...core.library import Library


@dataclass
class FolderNode:
    path: str                    # full folder path
    label: str                   # what the tree shows (single-child chains are collapsed: "home/me/Pictures")
    own: int = 0                 # photos directly in this folder
    total: int = 0               # photos here and below
    children: list["FolderNode"] = field(default_factory=list)


def folder_tree(lib: Library) -> tuple[int, list[FolderNode]]:
    """(number of photos, top-level folder nodes) for the tree, from one GROUP BY."""
    rows = lib.photos.folder_counts()
    root = FolderNode("", "")
    index: dict[str, FolderNode] = {"": root}
    for folder, n in rows:
        parts = [x for x in folder.split("/") if x]
        path = ""
        node = root
        for part in parts:
            path = f"{path}/{part}"
            child = index.get(path)
            if child is None:
                child = FolderNode(path, part)
                index[path] = child
                node.children.append(child)
            node = child
        node.own += n

    def finish(node: FolderNode) -> int:
        node.children.sort(key=lambda c: c.label.casefold())
        node.total = node.own + sum(finish(c) for c in node.children)
        return node.total

    total = finish(root)

    def collapse(node: FolderNode) -> FolderNode:
        while node.own == 0 and len(node.children) == 1:
            child = node.children[0]
            node = replace(child, label=f"{node.label}/{child.label}" if node.label else child.label)
        node.children = [collapse(c) for c in node.children]
        return node

    tops = [collapse(c) for c in root.children]
    for t in tops:  # a top folder shows its own name; the full path is in its tooltip
        t.label = t.path.rstrip("/").rsplit("/", 1)[-1] or t.path
    return total, tops


def import_roots(lib: Library) -> list[str]:
    """The topmost folders that hold photos: what "Rescan" walks when no folder is selected."""
    folders = lib.photos.folders()
    roots: list[str] = []
    for f in folders:
        if not any(f == r or f.startswith(r.rstrip("/") + "/") for r in roots):
            roots.append(f)
    return roots
