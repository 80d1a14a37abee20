"""Learning parity with the reference: do nnzoo's NG-GNN / NG-T train like mkofinas/neural-graphs' own models?

    python benchmarks/learning_parity.py --reference /work/ref/neural-graphs --model gnn
    python benchmarks/learning_parity.py --reference /work/ref/neural-graphs --model gnn --ref-norm per-network
    python benchmarks/learning_parity.py --reference /work/ref/neural-graphs --model transformer --steps 150

Forward parity is settled elsewhere (docs/models.md "Faithful to the reference implementations", tests/test_parity.py);
this measures training.  For every seed both models start from the *same weights* (nnzoo's model is initialised
from the seed and its weights are copied into the reference model through the explicit name/shape map below,
checked by comparing logits and gradients on a batch of one network), see the *same mini-batches in the same
order* (one ``torch.Generator`` per seed draws the permutations) and run the *same recipe* (AdamW lr 1e-3, weight
decay 5e-4, amsgrad, gradient-norm clipping 10, linear warm-up then constant, no augmentation), one plain loop for
both.  Each model reads its own input convention: the reference builds its graph with its own graph constructor and
its hard-coded weight statistics (``configs/data/mnist.yaml``, ``stats``), nnzoo standardises with the statistics
of the training split.  Validation accuracy and loss every ``--eval-every`` steps.

What is left different is exactly what nnzoo documents: (a) the graph LayerNorm of NG-GNN (the reference
normalises over the whole mini-batch, nnzoo per network) and (b) the input statistics; plus the dropout masks
(each model draws its own).  ``--ref-norm per-network`` runs the reference with its LayerNorm applied to each
network on its own (its own module, called once per network: nnzoo's norm) and ``--ref-stats nnzoo`` gives it
nnzoo's statistics, so a difference can be traced to its cause.

The reference is never copied into this repository: ``--reference`` points at a checkout kept elsewhere and is put
on ``sys.path`` at run time.  It needs ``hydra-core`` and ``random-fourier-features-pytorch`` (``rff``); install
them *without dependencies* (``rff`` would pull another torch) into a folder outside the repository and pass it
as ``--ref-site``:

    pip install --no-deps --target /work/ref/site hydra-core==1.3.2 antlr4-python3-runtime==4.9.3 \\
        random-fourier-features-pytorch==1.0.1

Run-time shims (outside the repository, applied only in this process): an empty ``rff.dataloader`` module where
torchvision is not installed (``rff/__init__`` imports it, and it imports torchvision; the reference uses only
``rff.layers``);
``torch_geometric.utils.trim_to_layer`` aliased to its PyG >= 2.5 home ``_trim_to_layer`` (the reference imports
the class but never calls it); and PyG's ``StdAggregation`` restored to PyG 2.3's ``sqrt(clamp(var, 1e-5))``, the
version the reference ran (README: ``pyg==2.3.0``), which nnzoo's aggregation reproduces (PyG >= 2.5 also zeroes
stds at the clamp).  ``--pyg-std installed`` keeps the installed formula.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "learning_parity"
LAYOUT = [2, 32, 32, 1]  # the MNIST SIREN layout the reference derives from its data (main.py: layer_layout)
REF_MODEL = {"gnn": "pna", "transformer": "rtransformer"}
# the overrides of scripts/mnist_cls_pna_probe_64.sh and scripts/mnist_cls_rt_probe_64.sh (``model.modulate_v=True``
# of the PNA script names no key of model/pna.yaml nor an argument of GNNForClassification: it is left out)
REF_OVERRIDES = {
    "pna": {"graph_constructor": {"num_probe_features": 64, "use_pos_embed": True},
            "gnn_backbone": {"dropout": 0.2}, "rev_edge_features": True},
    "rtransformer": {"graph_constructor": {"num_probe_features": 64, "use_pos_embed": True},
                     "dropout": 0.2, "modulate_v": True},
}


# ----------------------------------------------------------------------------------------------- weight maps
# (reference name, nnzoo name, how): "copy"; "rows:a:b" / "cols:a:b" take rows or columns a..b of the nnzoo
# tensor's *reference* counterpart, i.e. the reference tensor is the concatenation of several nnzoo tensors (see
# ``to_reference``); "points" reshapes nnzoo's (K, in) probe points to the reference's (1, K, in).
def _front_end() -> list[tuple[str, str, str]]:
    m = [("construct_graph.pos_embed", "input.position.table.weight", "copy"),
         ("construct_graph.proj_weight.0.b", "input.edge_encoder.fourier.frequencies", "copy"),
         ("construct_graph.proj_weight.1.weight", "input.edge_encoder.mlp.0.weight", "copy"),
         ("construct_graph.proj_weight.1.bias", "input.edge_encoder.mlp.0.bias", "copy"),
         ("construct_graph.proj_bias.0.b", "input.node_encoder.fourier.frequencies", "copy"),
         ("construct_graph.proj_bias.1.weight", "input.node_encoder.mlp.0.weight", "copy"),
         ("construct_graph.proj_bias.1.bias", "input.node_encoder.mlp.0.bias", "copy"),
         ("construct_graph.proj_node_in.weight", "input.node_in.weight", "copy"),
         ("construct_graph.proj_node_in.bias", "input.node_in.bias", "copy"),
         ("construct_graph.proj_edge_in.weight", "input.edge_in.weight", "copy"),
         ("construct_graph.proj_edge_in.bias", "input.edge_in.bias", "copy"),
         ("construct_graph.gpf.inputs", "input.probes.points", "points")]
    for g in range(len(LAYOUT)):  # one Linear + LayerNorm per neuron group (inputs, then each layer's outputs)
        for a, b in (("0.weight", "0.weight"), ("0.bias", "0.bias"), ("1.weight", "1.weight"), ("1.bias", "1.bias")):
            m.append((f"construct_graph.gpf.proj.{g}.{a}", f"input.probes.project.{g}.{b}", "copy"))
    return m


def gnn_map(layers: int = 4) -> list[tuple[str, str, str]]:
    """NG-GNN: reference ``GNNForClassification`` (PyG ``PNA`` backbone) <- nnzoo ``NeuralGraphGNN``.

    The reference message is ``scale * pre(cat[x_i, x_j]) + shift`` with ``scale, shift = edge_encoder(e).chunk(2)``
    (x_i the target); nnzoo splits the same maps: ``pre = [lin_target | lin_source]`` by input columns (the bias is
    lin_target's), ``edge_encoder = [film_scale ; film_shift]`` by output rows.
    """
    m = _front_end()
    for i in range(layers):
        c = f"gnn.convs.{i}"
        m += [(f"{c}.edge_encoder.weight", f"convs.{i}.film_scale.weight", "rows:0:1/2"),
              (f"{c}.edge_encoder.weight", f"convs.{i}.film_shift.weight", "rows:1/2:1"),
              (f"{c}.edge_encoder.bias", f"convs.{i}.film_scale.bias", "rows:0:1/2"),
              (f"{c}.edge_encoder.bias", f"convs.{i}.film_shift.bias", "rows:1/2:1"),
              (f"{c}.pre_nns.0.0.weight", f"convs.{i}.lin_target.weight", "cols:0:1/2"),
              (f"{c}.pre_nns.0.0.weight", f"convs.{i}.lin_source.weight", "cols:1/2:1"),
              (f"{c}.pre_nns.0.0.bias", f"convs.{i}.lin_target.bias", "copy"),
              (f"{c}.post_nns.0.0.weight", f"convs.{i}.post.weight", "copy"),
              (f"{c}.post_nns.0.0.bias", f"convs.{i}.post.bias", "copy"),
              (f"{c}.lin.weight", f"convs.{i}.lin.weight", "copy"),
              (f"{c}.lin.bias", f"convs.{i}.lin.bias", "copy")]
    for i in range(layers - 1):
        m += [(f"gnn.norms.{i}.weight", f"norms.{i}.weight", "copy"), (f"gnn.norms.{i}.bias", f"norms.{i}.bias", "copy")]
        for a, b in (("lin_e", "lin_edge"), ("lin_s", "lin_source"), ("lin_t", "lin_target"), ("lin1", "out.1")):
            m += [(f"gnn.edge_update.{i}.{a}.weight", f"edge_updates.{i}.{b}.weight", "copy"),
                  (f"gnn.edge_update.{i}.{a}.bias", f"edge_updates.{i}.{b}.bias", "copy")]
    for k in (0, 2, 4):
        m += [(f"proj_out.{k}.weight", f"readout.head.{k}.weight", "copy"),
              (f"proj_out.{k}.bias", f"readout.head.{k}.bias", "copy")]
    return m


def transformer_map(layers: int = 4) -> list[tuple[str, str, str]]:
    """NG-T: reference ``RelationalTransformer`` <- nnzoo ``NeuralGraphTransformer``.

    The attention projections have the same layout (head-major, then q/k/v (/v-modulation) blocks: the reference's
    ``rearrange(..., "b n (h d) -> b h n d")`` then ``chunk``), so every tensor is copied as it is.  The last layer
    has no edge update in either (a classifier never reads its edges).
    """
    m = _front_end()
    for i in range(layers):
        r, n = f"layers.{i}", f"layers.{i}"
        m += [(f"{r}.self_attn.qkv_node.weight", f"{n}.attention.node_qkv.weight", "copy"),
              (f"{r}.self_attn.qkv_edge.weight", f"{n}.attention.edge_qkv.weight", "copy"),
              (f"{r}.self_attn.proj_out.weight", f"{n}.attention.out.weight", "copy"),
              (f"{r}.self_attn.proj_out.bias", f"{n}.attention.out.bias", "copy"),
              (f"{r}.lin0.weight", f"{n}.lin0.weight", "copy"), (f"{r}.lin0.bias", f"{n}.lin0.bias", "copy"),
              (f"{r}.node_ln0.weight", f"{n}.norm0.weight", "copy"), (f"{r}.node_ln0.bias", f"{n}.norm0.bias", "copy"),
              (f"{r}.node_ln1.weight", f"{n}.norm1.weight", "copy"), (f"{r}.node_ln1.bias", f"{n}.norm1.bias", "copy"),
              (f"{r}.node_mlp.0.weight", f"{n}.mlp.0.weight", "copy"),
              (f"{r}.node_mlp.2.weight", f"{n}.mlp.2.weight", "copy"),
              (f"{r}.node_mlp.2.bias", f"{n}.mlp.2.bias", "copy")]
        if i < layers - 1:
            e, u = f"{r}.edge_updates", f"{n}.edge_update"
            for a, b in (("edge_mlp0.lin0_e", "pair"), ("edge_mlp0.lin0_s", "source"), ("edge_mlp0.lin0_t", "target"),
                         ("edge_mlp0.lin1", "pair_out.1"), ("edge_mlp1.2", "mlp.2"), ("eln0", "norm0"),
                         ("eln1", "norm1")):
                m += [(f"{e}.{a}.weight", f"{u}.{b}.weight", "copy"), (f"{e}.{a}.bias", f"{u}.{b}.bias", "copy")]
            m.append((f"{e}.edge_mlp1.0.weight", f"{u}.mlp.0.weight", "copy"))
    for k in (0, 2):
        m += [(f"proj_out.{k}.weight", f"readout.head.{k}.weight", "copy"),
              (f"proj_out.{k}.bias", f"readout.head.{k}.bias", "copy")]
    return m


WEIGHT_MAPS: dict[str, Callable[[], list[tuple[str, str, str]]]] = {"gnn": gnn_map, "transformer": transformer_map}
# reference tensors deliberately not taken from nnzoo: structure and constants, checked separately
REF_UNMAPPED = {"gnn": ("edge_index", "aggr_module.avg_deg_lin", "aggr_module.avg_deg_log"), "transformer": ()}
# nnzoo tensors with no reference counterpart: the statistics table (the reference hard-codes its statistics)
NNZOO_UNMAPPED = ("input.standardize.table",)


def _fraction(text: str) -> float:
    num, _, den = text.partition("/")
    return float(num) / float(den) if den else float(num)


def to_reference(state: dict[str, Tensor], mapping: Sequence[tuple[str, str, str]]) -> dict[str, Tensor]:
    """nnzoo state dict -> the reference's names and shapes, following ``mapping``.

    Split tensors (``rows:`` / ``cols:``) are reassembled by concatenation in the order of their fractions; each
    nnzoo tensor is used exactly once and every part must be present.
    """
    parts: dict[str, list[tuple[float, str, Tensor]]] = {}
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    for ref_name, ours, how in mapping:
        if ours in used:
            raise ValueError(f"nnzoo tensor {ours} is mapped twice")
        used.add(ours)
        t = state[ours].detach().clone()
        if how == "copy":
            out[ref_name] = t
        elif how == "points":
            out[ref_name] = t.unsqueeze(0)
        elif how.startswith(("rows:", "cols:")):
            kind, lo, hi = how.split(":")
            parts.setdefault(ref_name, []).append((_fraction(lo), kind, t))
            if _fraction(hi) <= _fraction(lo):
                raise ValueError(f"bad range {how} for {ref_name}")
        else:
            raise ValueError(f"unknown map kind {how!r}")
    for ref_name, pieces in parts.items():
        pieces.sort(key=lambda p: p[0])
        kinds = {k for _, k, _ in pieces}
        if len(kinds) != 1 or pieces[0][0] != 0.0:
            raise ValueError(f"{ref_name}: inconsistent parts {[(f, k) for f, k, _ in pieces]}")
        out[ref_name] = torch.cat([t for _, _, t in pieces], dim=0 if kinds == {"rows"} else 1)
    return out


def from_reference(ref_state: dict[str, Tensor], mapping: Sequence[tuple[str, str, str]]) -> dict[str, Tensor]:
    """The inverse of :func:`to_reference` (used to compare gradients name by name)."""
    groups: dict[str, list[tuple[float, float, str, str]]] = {}
    out: dict[str, Tensor] = {}
    for ref_name, ours, how in mapping:
        if ref_name not in ref_state:  # e.g. buffers, in a dict of gradients
            continue
        if how == "copy":
            out[ours] = ref_state[ref_name]
        elif how == "points":
            out[ours] = ref_state[ref_name].squeeze(0)
        else:
            kind, lo, hi = how.split(":")
            groups.setdefault(ref_name, []).append((_fraction(lo), _fraction(hi), kind, ours))
    for ref_name, pieces in groups.items():
        full = ref_state[ref_name]
        for lo, hi, kind, ours in pieces:
            dim = 0 if kind == "rows" else 1
            size = full.shape[dim]
            out[ours] = full.narrow(dim, round(lo * size), round((hi - lo) * size))
    return out


def load_mapped(ref_model: nn.Module, nnzoo_model: nn.Module, model: str) -> dict[str, Any]:
    """Copy nnzoo's weights into the reference model; refuse any reference tensor left unset or mis-shaped."""
    mapping = WEIGHT_MAPS[model]()
    state = nnzoo_model.state_dict()
    mapped = to_reference(state, mapping)
    target = ref_model.state_dict()
    skip = REF_UNMAPPED[model]
    missing = [k for k in target if k not in mapped and not any(k.endswith(s) for s in skip)]
    extra = [k for k in mapped if k not in target]
    shapes = [k for k in mapped if k in target and mapped[k].shape != target[k].shape]
    unused = [k for k in state if k not in {ours for _, ours, _ in mapping} and k not in NNZOO_UNMAPPED]
    if missing or extra or shapes or unused:
        raise RuntimeError(f"weight map incomplete: reference unset {missing}, unknown {extra}, "
                           f"shape mismatch {[(k, tuple(mapped[k].shape), tuple(target[k].shape)) for k in shapes]}, "
                           f"nnzoo unused {unused}")
    ref_model.load_state_dict({**target, **mapped}, strict=True)
    n_ref = sum(p.numel() for p in ref_model.parameters() if p.requires_grad)
    n_ours = sum(p.numel() for p in nnzoo_model.parameters() if p.requires_grad)
    return {"reference_parameters": n_ref, "nnzoo_parameters": n_ours,
            "mapped_tensors": len(mapping), "reference_tensors": len(target),
            "reference_not_from_nnzoo": sorted(k for k in target if k not in mapped),
            "nnzoo_not_mapped": sorted(k for k in state if k in NNZOO_UNMAPPED)}


# -------------------------------------------------------------------------------------------- inputs
def reference_inputs(spec: Any, flat: Tensor) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """A batch of flat nnzoo parameter vectors -> the reference's ``(weights, biases)``.

    Its ``INRDataset`` reads each ``nn.Linear`` state dict, transposes the weights to ``(in, out)`` and adds a
    feature axis: ``weights[l]`` is ``(B, in, out, 1)``, ``biases[l]`` ``(B, out, 1)``.  (No standardisation there:
    its ``normalize`` is false; the graph constructor standardises with its hard-coded statistics.)
    """
    weights, biases = [], []
    for layer in range(spec.num_layers):
        w, b = spec.slot(layer, "weight"), spec.slot(layer, "bias")
        weights.append(flat[:, w.start:w.end].reshape(-1, *w.shape).transpose(1, 2).unsqueeze(-1))
        biases.append(flat[:, b.start:b.end].reshape(-1, *b.shape).unsqueeze(-1))
    return tuple(weights), tuple(biases)


def reference_stats(stats: dict[str, list[list[float]]]) -> dict[str, list[float]]:
    """nnzoo's per-(role, layer) statistics in the reference's ``data.stats`` form."""
    return {"weights_mean": [m for m, _ in stats["weight"]], "weights_std": [s for _, s in stats["weight"]],
            "biases_mean": [m for m, _ in stats["bias"]], "biases_std": [s for _, s in stats["bias"]]}


# ---------------------------------------------------------------------------------- batch order and schedule
def batch_order(num: int, batch_size: int, steps: int, seed: int) -> list[Tensor]:
    """The index batches of ``steps`` training steps: epochs of ``torch.randperm`` from one generator per seed
    (the last batch of an epoch may be short, as a loader without drop_last)."""
    gen = torch.Generator().manual_seed(seed)
    out: list[Tensor] = []
    while len(out) < steps:
        perm = torch.randperm(num, generator=gen)
        out += list(perm.split(batch_size))
    return out[:steps]


def warmup_factor(step: int, warmup: int) -> float:
    """Learning-rate factor of optimiser step ``step`` (0-based): ``(step + 1) / warmup`` then 1.  The reference's
    ``WarmupLRScheduler`` (``_step_count / warmup_steps``, its count starting at 1) and nnzoo's task give the same."""
    return min((step + 1) / max(warmup, 1), 1.0)


# ---------------------------------------------------------------------------------------------- statistics
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired_t(a: Sequence[float], b: Sequence[float]) -> dict[str, float | None]:
    """Paired differences ``a - b``: mean, sample std, t = mean / (std / sqrt(n)) and its two-sided p-value
    (Student t with n - 1 degrees of freedom; None where undefined)."""
    if len(a) != len(b) or not a:
        raise ValueError("paired samples need the same, non-zero length")
    d = [x - y for x, y in zip(a, b)]
    mean, std = mean_std(d)
    n = len(d)
    if n < 2:
        return {"n": n, "mean": mean, "std": std, "t": None, "p": None}
    if std == 0.0:
        return {"n": n, "mean": mean, "std": std, "t": None if mean == 0 else math.copysign(math.inf, mean),
                "p": None if mean == 0 else 0.0}
    t = mean / (std / math.sqrt(n))
    return {"n": n, "mean": mean, "std": std, "t": t, "p": _t_two_sided(t, n - 1)}


def _t_two_sided(t: float, dof: int) -> float:
    """Two-sided p-value of Student's t: ``I_{dof/(dof+t^2)}(dof/2, 1/2)`` (regularised incomplete beta)."""
    try:
        from scipy.stats import t as student
        return float(2 * student.sf(abs(t), dof))
    except ImportError:  # pragma: no cover - scipy is installed with the project's dependencies
        x = dof / (dof + t * t)
        return _betainc(dof / 2, 0.5, x)


def _betainc(a: float, b: float, x: float, terms: int = 200) -> float:  # pragma: no cover - fallback only
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x)) / a
    f, c, d = 1.0, 1.0, 0.0
    for i in range(terms):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = (m * (b - m) * x) / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -((a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1 + num * d
        d = 1 / (d if abs(d) > 1e-30 else 1e-30)
        c = 1 + num / c if abs(c) > 1e-30 else 1e-30
        f *= c * d
        if abs(1 - c * d) < 1e-12:
            break
    return front * (f - 1)


def summarise(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Final validation accuracy / loss per seed for both models, their means, the paired difference."""
    seeds = sorted(runs, key=int)
    out: dict[str, Any] = {"seeds": [int(s) for s in seeds]}
    for metric in ("val_acc", "val_loss", "train_loss_last_eval_window"):
        if any(metric not in runs[s][m]["curve"][-1] for s in seeds for m in ("nnzoo", "reference")):
            continue
        ours = [runs[s]["nnzoo"]["curve"][-1][metric] for s in seeds]
        ref = [runs[s]["reference"]["curve"][-1][metric] for s in seeds]
        out[metric] = {"nnzoo": ours, "reference": ref, "nnzoo_mean_std": mean_std(ours),
                       "reference_mean_std": mean_std(ref), "difference": paired_t(ours, ref)}
    return out


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    """The report: commands, setup, per-seed table, paired difference, curves, what could not be matched."""
    cfg, summary = result["config"], result.get("summary")
    lines = [f"# Learning parity with the reference: {cfg['model']} ({result['reference_class']})", "",
             "Commands:", "", "```"]
    lines += result["commands"] + ["```", ""]
    if result.get("check_only"):
        lines += ["**Check only: no training was run** (`--check-only`); the recipe below is what a training run "
                  "would use.", ""]
    lines += [f"Data: `{cfg['data']}` ({result['data']['sizes']['train']} train / {result['data']['sizes']['val']} val "
              f"INRs). {cfg['steps']} steps of batch {cfg['batch_size']}, AdamW lr {cfg['lr']:g}, weight decay "
              f"{cfg['weight_decay']:g}, amsgrad, clip {cfg['clip']:g}, linear warm-up {cfg['warmup']} steps then "
              f"constant, no augmentation, dropout as the reference scripts (0.2, active in training). Same initial "
              f"weights and same batch order per seed. Validation every {cfg['eval_every']} steps in order, "
              f"batches of {cfg['eval_batch_size']}. Reference variant: LayerNorm `{cfg['ref_norm']}`, statistics "
              f"`{cfg['ref_stats']}`, PyG std `{cfg['pyg_std']}`. {cfg['threads']} thread(s), {result['machine']}.", ""]
    check = result.get("check", {})
    if check:
        lines += ["Weight map check (eval mode, float32, nnzoo's statistics given to the reference for the check):", ""]
        for k, v in check.items():
            if isinstance(v, dict) and "max_abs" in v:
                lines.append(f"- {k}: max |difference| {v['max_abs']:.2e} (largest |value| {v['scale']:.2e})")
        lines.append("")
    if summary:
        acc, loss = summary["val_acc"], summary["val_loss"]
        lines += ["| seed | reference val acc | nnzoo val acc | nnzoo − reference | reference val loss | nnzoo val loss |",
                  "|---|---|---|---|---|---|"]
        for i, seed in enumerate(summary["seeds"]):
            lines.append(f"| {seed} | {_fmt(acc['reference'][i])} | {_fmt(acc['nnzoo'][i])} | "
                         f"{acc['nnzoo'][i] - acc['reference'][i]:+.3f} | {_fmt(loss['reference'][i])} | "
                         f"{_fmt(loss['nnzoo'][i])} |")
        d, dl = acc["difference"], loss["difference"]
        lines.append(f"| mean ± std | {_fmt(acc['reference_mean_std'][0])} ± {_fmt(acc['reference_mean_std'][1])} | "
                     f"{_fmt(acc['nnzoo_mean_std'][0])} ± {_fmt(acc['nnzoo_mean_std'][1])} | "
                     f"{d['mean']:+.3f} ± {_fmt(d['std'])} | "
                     f"{_fmt(loss['reference_mean_std'][0])} ± {_fmt(loss['reference_mean_std'][1])} | "
                     f"{_fmt(loss['nnzoo_mean_std'][0])} ± {_fmt(loss['nnzoo_mean_std'][1])} |")
        lines += ["", f"Paired difference nnzoo − reference (n = {d['n']} seeds): val acc {d['mean']:+.4f} ± "
                  f"{_fmt(d['std'], 4)}, t = {_fmt(d['t'], 2)}, two-sided p = {_fmt(d['p'], 3)}; val loss "
                  f"{dl['mean']:+.4f} ± {_fmt(dl['std'], 4)}, t = {_fmt(dl['t'], 2)}, p = {_fmt(dl['p'], 3)}" +
                  ("; training loss over the last {} steps {:+.4f} ± {}, t = {}, p = {} (reference {} ± {}, nnzoo {} ± {})"
                   .format(cfg["eval_every"], tl["difference"]["mean"], _fmt(tl["difference"]["std"], 4),
                           _fmt(tl["difference"]["t"], 2), _fmt(tl["difference"]["p"], 3),
                           *map(_fmt, tl["reference_mean_std"]), *map(_fmt, tl["nnzoo_mean_std"]))
                   if (tl := summary.get("train_loss_last_eval_window")) else "") + ".", ""]
    seeds = sorted(result["runs"], key=int)
    if seeds:
        lines += ["Validation accuracy curves (reference / nnzoo):", "",
                  "| step | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
        for j, point in enumerate(result["runs"][seeds[0]]["reference"]["curve"]):
            cells = []
            for s in seeds:
                r, o = result["runs"][s]["reference"]["curve"], result["runs"][s]["nnzoo"]["curve"]
                cells.append(f"{r[j]['val_acc']:.3f} / {o[j]['val_acc']:.3f}" if j < len(r) and j < len(o) else "")
            lines.append(f"| {point['step']} | " + " | ".join(cells) + " |")
    lines += ["", "Not matched between the two: " + "; ".join(result["not_matched"]) + ".", ""]
    if "nnzoo_rerun_check" in result:
        lines += [f"nnzoo's runs are reused from `{result['nnzoo_runs_from']}`; re-running their first steps here gives "
                  "train losses that differ by at most " + ", ".join(
                      f"{v['max_abs_train_loss_difference']:.1e} (seed {s}, {v['steps']} steps)"
                      for s, v in result["nnzoo_rerun_check"].items()) + ".", ""]
    if "timing_steps" in result:
        lines += ["Forward + backward of one training batch (seconds; the first includes warm-up): " + "; ".join(
            f"{k}: {', '.join(f'{t:.1f}' for t in v)}" for k, v in result["timing_steps"].items()) + ".", ""]
    if result.get("timing"):
        lines += ["Seconds per training step (mean over the run): " + ", ".join(
            f"seed {s}: reference {t['reference']:.2f}, nnzoo {t['nnzoo']:.2f}" for s, t in result["timing"].items())
            + ".", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ the reference, at run time
def setup_reference(reference: Path, site: Path | None, pyg_std: str) -> list[str]:
    """Put the reference checkout (and its extra packages) on ``sys.path``, apply the run-time shims; returns
    what was shimmed."""
    shims = []
    for p in (site, reference):
        if p is not None and str(p) not in sys.path:
            sys.path.insert(0, str(p))
    import importlib.util
    if importlib.util.find_spec("torchvision") is None and "rff.dataloader" not in sys.modules:
        sys.modules["rff.dataloader"] = types.ModuleType("rff.dataloader")  # rff/__init__ imports it; it needs
        shims.append("empty rff.dataloader module (it imports torchvision; the reference never uses it)")
    import torch_geometric.utils as pyg_utils
    try:
        import torch_geometric.utils.trim_to_layer  # noqa: F401
    except ImportError:
        from torch_geometric.utils import _trim_to_layer
        sys.modules["torch_geometric.utils.trim_to_layer"] = _trim_to_layer
        pyg_utils.trim_to_layer = _trim_to_layer
        shims.append("torch_geometric.utils.trim_to_layer -> _trim_to_layer (imported, never called)")
    if pyg_std == "2.3":
        from torch_geometric.nn.aggr import basic

        def std_forward(self, x, index=None, ptr=None, dim_size=None, dim=-2):  # PyG 2.3
            var = self.var_aggr(x, index, ptr, dim_size, dim)
            return var.clamp(min=1e-5).sqrt()

        basic.StdAggregation.forward = std_forward
        shims.append("PyG StdAggregation = sqrt(clamp(var, 1e-5)) (PyG 2.3, the reference's version)")
    return shims


def reference_config(reference: Path, model: str, stats: dict[str, list[float]] | None) -> Any:
    """The reference's model config as its main.py sees it: base + model + data configs, the script's overrides
    (``stats``: replaces its hard-coded ``data.stats``)."""
    from omegaconf import OmegaConf
    base = reference / "experiments" / "inr_classification" / "configs"
    name = REF_MODEL[model]
    cfg = OmegaConf.merge(OmegaConf.load(base / "base.yaml"),
                          {"model": OmegaConf.load(base / "model" / f"{name}.yaml"),
                           "data": OmegaConf.load(base / "data" / "mnist.yaml")})
    cfg = OmegaConf.merge(cfg, {"model": REF_OVERRIDES[name]})
    if stats is not None:
        cfg.data.stats = stats
    return cfg


def build_reference(reference: Path, model: str, stats: dict[str, list[float]] | None) -> nn.Module:
    import hydra
    cfg = reference_config(reference, model, stats)
    return hydra.utils.instantiate(cfg.model, layer_layout=list(LAYOUT))  # as main.py: model_kwargs["layer_layout"]


def per_network_norm(norm: nn.Module, nodes_per_network: int) -> None:
    """Make the reference's graph LayerNorm normalise each network on its own: its own ``forward`` (no batch
    vector, i.e. ``(x - mean) / (std + eps)``) called on each network's rows, which is nnzoo's GraphLayerNorm."""
    original = type(norm).forward

    def forward(x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if x.shape[0] % nodes_per_network:
            raise RuntimeError(f"{x.shape[0]} nodes is not a whole number of {nodes_per_network}-node networks")
        return torch.cat([original(norm, part) for part in x.split(nodes_per_network)])

    norm.forward = forward  # an instance attribute: nn.Module.__call__ finds it, the state dict is unchanged


# --------------------------------------------------------------------------------------------- training
def evaluate(forward: Callable[[Tensor], Tensor], model: nn.Module, params: Tensor, labels: Tensor,
             batch_size: int) -> dict[str, float]:
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            logits = forward(params[start:start + batch_size])
            y = labels[start:start + batch_size]
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(-1) == y).sum())
    model.train()
    return {"val_loss": loss / len(labels), "val_acc": correct / len(labels)}


def train(model: nn.Module, forward: Callable[[Tensor], Tensor], train_params: Tensor, train_labels: Tensor,
          val_params: Tensor, val_labels: Tensor, order: list[Tensor], cfg: dict[str, Any], dropout_seed: int,
          label: str) -> dict[str, Any]:
    """The recipe, identical for both models; returns the validation curve and the training losses."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], amsgrad=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_factor(s, cfg["warmup"]))
    torch.manual_seed(dropout_seed)  # dropout masks: deterministic per seed (each model draws its own)
    curve = [{"step": 0, **evaluate(forward, model, val_params, val_labels, cfg["eval_batch_size"])}]
    losses, grad_norms = [], []
    model.train()
    start = time.perf_counter()
    train_time = 0.0
    for step, idx in enumerate(order, start=1):
        t0 = time.perf_counter()
        logits = forward(train_params[idx])
        loss = F.cross_entropy(logits, train_labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norms.append(float(torch.nn.utils.clip_grad_norm_(params, cfg["clip"])))
        optimizer.step()
        scheduler.step()
        train_time += time.perf_counter() - t0
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            raise RuntimeError(f"{label}: non-finite loss at step {step}")
        if step % cfg["eval_every"] == 0 or step == len(order):
            point = {"step": step, **evaluate(forward, model, val_params, val_labels, cfg["eval_batch_size"]),
                     "train_loss_last_eval_window": statistics.fmean(losses[-cfg["eval_every"]:])}
            curve.append(point)
            print(f"  {label} step {step}: val acc {point['val_acc']:.3f} loss {point['val_loss']:.3f} "
                  f"train loss {point['train_loss_last_eval_window']:.3f} "
                  f"({(time.perf_counter() - start) / step:.2f} s/step)", flush=True)
    return {"curve": curve, "train_loss": losses, "grad_norm": grad_norms, "seconds_per_step": train_time / len(order)}


# ---------------------------------------------------------------------------------------------------- main
def load_data(which: str) -> tuple[Any, str]:
    """nnzoo's built mnist_inr datamodule: the 5,000 x 2-view build when asked for (or, with ``auto``, when it is
    already cached), else the default build (2,000 INRs)."""
    from nnzoo.config import compose
    from nnzoo.data.builders.cache import BUILD_INFO
    from nnzoo.train import build_datamodule
    big = ["data.build.size=5000", "data.build.views=2"]
    if which == "auto":
        dm = build_datamodule(compose("gnn", "mnist_inr", overrides=big))
        folder = dm.cache_dir / "datasets" / f"{dm.build_config.source}_inr-{dm.build_config.key()}"
        which = "5000x2" if (folder / BUILD_INFO).is_file() else "default"
    dm = build_datamodule(compose("gnn", "mnist_inr", overrides=big if which == "5000x2" else []))
    dm.setup()
    name = "mnist_inr " + ("data.build.size=5000 data.build.views=2" if which == "5000x2" else "default build (size 2000)")
    return dm, name


def nnzoo_model(model: str, info: Any, seed: int) -> nn.Module:
    from nnzoo.config import compose, to_container
    from nnzoo.models import create_model
    options = {k: v for k, v in to_container(compose(model, "mnist_inr").model).items() if k != "name"}
    torch.manual_seed(seed)
    return create_model(model, info, **options)


def _weight_batch(spec: Any, params: Tensor) -> Any:
    from nnzoo.data.weights import WeightBatch
    return WeightBatch([spec], [params], torch.zeros(len(params), dtype=torch.long))


def _diff(a: Tensor, b: Tensor) -> dict[str, float]:
    a, b = a.detach(), b.detach()
    return {"max_abs": float((a - b).abs().max()), "scale": float(b.abs().max())}


def check_mapping(model: str, ours: nn.Module, ref: nn.Module, spec: Any, params: Tensor, labels: Tensor,
                  ours_stats: dict[str, list[float]], batch_size: int) -> dict[str, Any]:
    """Logits (eval mode) and gradients on a batch of one network, with nnzoo's statistics given to the reference
    for the check; then a full batch (the graph LayerNorm differs there for NG-GNN, and not with the per-network
    patch)."""
    from nnzoo.data.weights import WeightBatch
    saved = ref.construct_graph.stats
    ref.construct_graph.stats = ours_stats
    out: dict[str, Any] = {}
    try:
        ours.eval()
        ref.eval()
        one, y = params[:1], labels[:1]
        lo = ours(WeightBatch([spec], [one], y))
        lr = ref(reference_inputs(spec, one))
        out["logits, 1 network"] = _diff(lo, lr)
        for m in (ours, ref):
            m.zero_grad(set_to_none=True)
        F.cross_entropy(ours(WeightBatch([spec], [one], y)), y).backward()
        F.cross_entropy(ref(reference_inputs(spec, one)), y).backward()
        ref_grads = from_reference({n: p.grad for n, p in ref.named_parameters() if p.grad is not None},
                                   WEIGHT_MAPS[model]())
        grads = {n: p.grad for n, p in ours.named_parameters() if p.grad is not None}
        if set(grads) != set(ref_grads):
            raise RuntimeError(f"gradients of different tensors: {sorted(set(grads) ^ set(ref_grads))}")
        worst = max(((n, float((g - ref_grads[n]).abs().max() / g.abs().max().clamp_min(1e-12)))
                     for n, g in grads.items()), key=lambda t: t[1])
        flat_o = torch.cat([g.flatten() for g in grads.values()])
        flat_r = torch.cat([ref_grads[n].flatten() for n in grads])
        out["gradients, 1 network"] = {**_diff(flat_o, flat_r), "worst_relative": worst}
        batch, yb = params[:batch_size], labels[:batch_size]
        out[f"logits, batch of {len(yb)}"] = _diff(ours(WeightBatch([spec], [batch], yb)),
                                                    ref(reference_inputs(spec, batch)))
    finally:
        ref.construct_graph.stats = saved
        for m in (ours, ref):
            m.zero_grad(set_to_none=True)
            m.train()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", type=Path, required=True, help="checkout of mkofinas/neural-graphs (outside the repo)")
    ap.add_argument("--ref-site", type=Path, default=None,
                    help="folder with the reference's extra packages (hydra, rff); default: <reference>/../site if present")
    ap.add_argument("--model", choices=("gnn", "transformer"), default="gnn")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=None, help="training steps (default 400 for gnn, 150 for transformer)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--eval-batch-size", type=int, default=None, help="default: --batch-size")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--clip", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", choices=("auto", "default", "5000x2"), default="auto",
                    help="auto: the 5,000 x 2-view build if cached, else the default build")
    ap.add_argument("--ref-norm", choices=("batch", "per-network"), default="batch",
                    help="batch: the reference as written (LayerNorm over the mini-batch); per-network: nnzoo's norm")
    ap.add_argument("--ref-stats", choices=("reference", "nnzoo"), default="reference",
                    help="the reference's hard-coded statistics, or nnzoo's from the training split")
    ap.add_argument("--pyg-std", choices=("2.3", "installed"), default="2.3")
    ap.add_argument("--out", type=Path, default=None, help="output stem (default benchmarks/results/learning_parity/<model>)")
    ap.add_argument("--resume", action="store_true", help="keep the seeds already in --out's JSON (same config)")
    ap.add_argument("--reuse-nnzoo", type=Path, default=None,
                    help="a previous result JSON (same config but the reference variant): take nnzoo's runs from it, "
                         "after re-running its first --verify-steps steps and checking they are the same")
    ap.add_argument("--verify-steps", type=int, default=5)
    ap.add_argument("--check-only", action="store_true",
                    help="only the weight-map check and the time of --time-steps training steps of each model")
    ap.add_argument("--time-steps", type=int, default=2)
    ap.add_argument("--render-only", action="store_true", help="rewrite --out's report from its JSON (no training)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(args.threads)
    except RuntimeError:
        pass
    steps = args.steps or (400 if args.model == "gnn" else 150)
    site = args.ref_site or (args.reference.parent / "site" if (args.reference.parent / "site").is_dir() else None)
    stem = args.out or RESULTS / args.model
    stem.parent.mkdir(parents=True, exist_ok=True)
    if args.render_only:
        result = json.loads(stem.with_suffix(".json").read_text())
        if result["runs"]:
            result["summary"] = summarise(result["runs"])
        result["commands"].append("OMP_NUM_THREADS=%s python %s" % (os.environ.get("OMP_NUM_THREADS", "?"), " ".join(
            shlex.quote(a) for a in [os.path.relpath(__file__, REPO), *sys.argv[1:]])))
        write_results(result, stem.with_suffix(".json"), stem.with_suffix(".md"))
        print(markdown(result))
        return
    shims = setup_reference(args.reference.resolve(), site.resolve() if site else None, args.pyg_std)

    dm, data_name = load_data(args.data)
    info, spec = dm.info, dm.info.specs[0]
    train_set, val_set = dm.split("train"), dm.split("val")
    train_params, train_labels = train_set.params[0][train_set.row], train_set.targets.long()
    val_params, val_labels = val_set.params[0][val_set.row], val_set.targets.long()
    ours_stats = reference_stats(info.stats)
    ref_cfg = reference_config(args.reference, args.model, None)
    from omegaconf import OmegaConf
    hard_coded = OmegaConf.to_container(ref_cfg.data.stats)

    cfg = {"model": args.model, "steps": steps, "batch_size": args.batch_size,
           "eval_batch_size": args.eval_batch_size or args.batch_size, "eval_every": args.eval_every,
           "warmup": args.warmup, "lr": args.lr, "weight_decay": args.weight_decay, "clip": args.clip,
           "threads": args.threads, "data": data_name, "ref_norm": args.ref_norm, "ref_stats": args.ref_stats,
           "pyg_std": args.pyg_std}
    command = "OMP_NUM_THREADS=%s python %s" % (os.environ.get("OMP_NUM_THREADS", "?"),
                                                 " ".join(shlex.quote(a) for a in [
                                                     os.path.relpath(__file__, REPO), *sys.argv[1:]]))
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    previous = json.loads(json_path.read_text()) if args.resume and json_path.is_file() else None
    if previous is not None and previous["config"] != cfg:
        raise SystemExit(f"--resume: {json_path} was made with another config: {previous['config']}")
    import importlib.metadata as md
    result: dict[str, Any] = {
        "config": cfg, "commands": (previous["commands"] if previous else []) + [command],
        "reference_class": ref_cfg.model._target_, "reference_path": str(args.reference),
        "reference_overrides": REF_OVERRIDES[REF_MODEL[args.model]], "shims": shims,
        "versions": {"torch": torch.__version__, "torch_geometric": md.version("torch-geometric"),
                     "hydra-core": md.version("hydra-core"), "rff": md.version("random-fourier-features-pytorch"),
                     "python": platform.python_version()},
        "machine": f"{platform.machine()} CPU",
        "data": {"name": data_name, "sizes": {"train": len(train_labels), "val": len(val_labels)},
                 "nnzoo_stats": ours_stats, "reference_hard_coded_stats": hard_coded,
                 "reference_stats_used": ours_stats if args.ref_stats == "nnzoo" else hard_coded},
        "not_matched": [
            "dropout masks (each model draws its own, from the same seed)",
            ("graph LayerNorm: " + ("the reference normalises over the whole mini-batch, nnzoo per network"
                                    if args.ref_norm == "batch" else "matched (--ref-norm per-network)"))
            if args.model == "gnn" else "no graph LayerNorm in NG-T (its LayerNorms act on each node and edge); "
            "nnzoo's masking of padding neurons does nothing with one architecture",
            "input statistics: " + ("the reference's hard-coded ones (its data's) vs nnzoo's from the training split"
                                    if args.ref_stats == "reference" else "matched (--ref-stats nnzoo)"),
            "reference buffers rebuilt from the layout, not copied: " + ", ".join(REF_UNMAPPED[args.model] or ("none",)),
        ],
        "runs": dict(previous["runs"]) if previous else {}, "timing": dict(previous.get("timing", {})) if previous else {},
    }
    print(f"data: {data_name}: {len(train_labels)} train / {len(val_labels)} val; shims: {shims}", flush=True)
    reused = None
    if args.reuse_nnzoo is not None:
        reused = json.loads(args.reuse_nnzoo.read_text())
        variant = ("ref_norm", "ref_stats", "pyg_std")
        if {k: v for k, v in reused["config"].items() if k not in variant} != \
                {k: v for k, v in cfg.items() if k not in variant}:
            raise SystemExit(f"--reuse-nnzoo: {args.reuse_nnzoo} was made with another config: {reused['config']}")
        result["nnzoo_runs_from"] = os.path.relpath(args.reuse_nnzoo, REPO)
        result["nnzoo_rerun_check"] = {}
        result["not_matched"].append(f"nnzoo's runs are those of {result['nnzoo_runs_from']} (same seeds, weights, "
                                     f"batches and dropout seed; its first {args.verify_steps} steps re-run here)")

    for seed in args.seeds:
        if str(seed) in result["runs"]:
            print(f"seed {seed}: kept from {json_path}")
            continue
        ours = nnzoo_model(args.model, info, seed)
        ref = build_reference(args.reference, args.model,
                              ours_stats if args.ref_stats == "nnzoo" else None)
        result["weight_map"] = load_mapped(ref, ours, args.model)
        if args.model == "gnn":  # PNA's degree normaliser: a constant both derive from the layout
            result["weight_map"]["avg_log_degree"] = {
                "reference": float(ref.gnn.convs[0].aggr_module.avg_deg_log), "nnzoo": ours.convs[0].avg_log_degree}
            if args.ref_norm == "per-network":
                for norm in ref.gnn.norms:
                    per_network_norm(norm, sum(LAYOUT))
        if "check" not in result:
            result["check"] = check_mapping(args.model, ours, ref, spec, val_params, val_labels, ours_stats,
                                            cfg["eval_batch_size"])
            print(f"weight map check: {json.dumps(result['check'])}", flush=True)
        order = batch_order(len(train_labels), args.batch_size, steps, seed)
        if args.check_only:
            result["check_only"] = True
            result["timing_steps"] = {}
            for label, model, fwd in (("reference", ref, lambda p: ref(reference_inputs(spec, p))),
                                      ("nnzoo", ours, lambda p: ours(_weight_batch(spec, p)))):
                times = []
                for idx in order[:args.time_steps]:
                    t0 = time.perf_counter()
                    F.cross_entropy(fwd(train_params[idx]), train_labels[idx]).backward()
                    times.append(time.perf_counter() - t0)
                model.zero_grad(set_to_none=True)
                result["timing_steps"][label] = times
                print(f"{label}: forward + backward of a batch of {args.batch_size}: {times} s", flush=True)
            break

        def ours_forward(p: Tensor, model: nn.Module = ours) -> Tensor:
            return model(_weight_batch(spec, p))

        def ref_forward(p: Tensor, model: nn.Module = ref) -> Tensor:
            return model(reference_inputs(spec, p))

        run = {}
        jobs = [("reference", ref, ref_forward), ("nnzoo", ours, ours_forward)]
        if reused is not None:
            if str(seed) not in reused["runs"]:
                raise SystemExit(f"--reuse-nnzoo: seed {seed} is not in {args.reuse_nnzoo}")
            stored = reused["runs"][str(seed)]["nnzoo"]
            k = min(args.verify_steps, steps)
            rerun = train(ours, ours_forward, train_params, train_labels, val_params, val_labels, order[:k], cfg,
                          dropout_seed=10_000 + seed, label=f"seed {seed} nnzoo (re-run of {k} steps)")
            worst = max(abs(a - b) for a, b in zip(rerun["train_loss"], stored["train_loss"][:k]))
            result["nnzoo_rerun_check"][str(seed)] = {"steps": k, "max_abs_train_loss_difference": worst}
            print(f"seed {seed}: nnzoo re-run of {k} steps: train losses differ by at most {worst:.2e}", flush=True)
            if worst > 1e-5:
                raise SystemExit(f"nnzoo's re-run differs from {args.reuse_nnzoo} ({worst:.2e}): not reusable")
            run["nnzoo"] = stored
            jobs = jobs[:1]
        for label, model, forward in jobs:
            print(f"seed {seed}: {label}", flush=True)
            run[label] = train(model, forward, train_params, train_labels, val_params, val_labels, order, cfg,
                               dropout_seed=10_000 + seed, label=f"seed {seed} {label}")
        run = {"reference": run["reference"], "nnzoo": run["nnzoo"]}
        result["runs"][str(seed)] = run
        result["timing"][str(seed)] = {k: run[k]["seconds_per_step"] for k in run}
        result["summary"] = summarise(result["runs"])
        write_results(result, json_path, md_path)
    if result["runs"]:
        result["summary"] = summarise(result["runs"])
    write_results(result, json_path, md_path)
    print(markdown(result))


def write_results(result: dict[str, Any], json_path: Path, md_path: Path) -> None:
    from nnzoo.io import write_json, write_text
    write_json(json_path, result)
    write_text(md_path, markdown(result))


if __name__ == "__main__":
    main()
