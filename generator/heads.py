"""Attention heads as typed ids, and the notebook's early / middle / late layer groups.

Torch-free: experiments store heads as {"layer": l, "head": h} and the render side names them
with `head_name`, the one place "L9H1" is spelled."""

from __future__ import annotations

from typing import NamedTuple

# The notebook's split of GPT-2 small's 12 layers (first_mid_layer = 7, first_late_layer = 9),
# scaled to other depths.
NOTEBOOK_LAYERS, NOTEBOOK_FIRST_MID, NOTEBOOK_FIRST_LATE = 12, 7, 9
GROUPS = ("early", "middle", "late")


class Head(NamedTuple):
    layer: int
    head: int

    @property
    def name(self) -> str:
        return head_name(self)

    def as_dict(self) -> dict:
        return {"layer": self.layer, "head": self.head}

    @classmethod
    def of(cls, data) -> Head:
        """A head from its stored form ({"layer", "head"}), a typed record with those
        attributes (generator.schemas) or a (layer, head) pair."""
        if isinstance(data, dict):
            return cls(int(data["layer"]), int(data["head"]))
        if hasattr(data, "layer") and hasattr(data, "head") and not isinstance(data, tuple):
            return cls(int(data.layer), int(data.head))
        layer, head = data
        return cls(int(layer), int(head))


def head_name(head) -> str:
    """'L9H1' for layer 9, head 1 (the notebook's labels)."""
    h = Head.of(head)
    return f"L{h.layer}H{h.head}"


def group_bounds(n_layers: int) -> tuple[int, int]:
    """(first middle layer, first late layer): the notebook's 7 and 9 of 12, scaled."""
    first_mid = round(NOTEBOOK_FIRST_MID * n_layers / NOTEBOOK_LAYERS)
    first_late = round(NOTEBOOK_FIRST_LATE * n_layers / NOTEBOOK_LAYERS)
    return first_mid, max(first_mid, first_late)


def layer_group(layer: int, n_layers: int) -> str:
    first_mid, first_late = group_bounds(n_layers)
    return GROUPS[0] if layer < first_mid else GROUPS[1] if layer < first_late else GROUPS[2]


def group_layers(n_layers: int) -> dict[str, list[int]]:
    """Each group's layers (a group may be empty in a shallow model)."""
    out: dict[str, list[int]] = {g: [] for g in GROUPS}
    for layer in range(n_layers):
        out[layer_group(layer, n_layers)].append(layer)
    return out


def node_name(node) -> str:
    """A node of the circuit graph by its stored id (a dict, or typed: generator.schemas.common.Node):
    'embed', 'L1H2', 'MLP3', 'L1H2.q', 'logits'."""
    kind = node["kind"] if isinstance(node, dict) else node.kind
    if kind in ("embed", "logits"):
        return kind
    if kind == "mlp":
        return f"MLP{node['layer'] if isinstance(node, dict) else node.layer}"
    name = head_name(node)
    return name if kind == "head" else f"{name}.{kind}"


def stack_label(label: str) -> str:
    """TransformerLens's residual-stack labels ("3_attn_out", "3_mid", "final_post") as axis labels."""
    names = {"attn_out": "attn", "mlp_out": "MLP", "pre": "pre", "mid": "mid"}
    layer, _, kind = label.partition("_")
    if layer.isdigit():
        return f"L{layer} {names[kind]}"
    return {"final_post": "final"}.get(label, label)
