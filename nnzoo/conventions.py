"""Input-convention cards: what a network file must be for a checkpoint's predictions to mean anything.

A card is stored in every manifest entry (``nnzoo export``) and shown by ``nnzoo list checkpoints
--details`` and ``nnzoo predict --help``; it is built from the data's :class:`NetworkSpec` s and the INR
coordinate convention of :mod:`nnzoo.data.siren_fit`, so every number lives in one place.
"""

from __future__ import annotations

from typing import Any

NFN_INR_DATASETS = ("nfn_mnist_inr", "nfn_fmnist_inr", "cifar10_inr")
"""INR datasets read from the NFN files: their coordinate grid is the NFN authors', not recorded by nnzoo."""


def _inr_image_size(info) -> tuple[int, int] | None:
    """Image (and coordinate-grid) size of an INR dataset's images, where nnzoo knows it."""
    from nnzoo.data.siren_fit import IMAGE_SIZE
    source = info.extra.get("build", {}).get("recipe", {}).get("source")
    if source is not None:  # built offline from shipped images
        return {"mnist": IMAGE_SIZE, "digits": (8, 8)}.get(source)
    if isinstance(info.extra.get("image_size"), list):  # editing datasets record the grid they render on
        return tuple(info.extra["image_size"])
    return {"mnist_inr": IMAGE_SIZE, "fmnist_inr": IMAGE_SIZE, "nfn_mnist_inr": IMAGE_SIZE,
            "nfn_fmnist_inr": IMAGE_SIZE, "cifar10_inr": (32, 32)}.get(info.name)


def _activation_text(spec) -> str:
    hidden = sorted({layer.activation for layer in spec.layers[:-1]}) or ["none"]
    words = [f"sine, sin(w0 * x) with w0 = {spec.w0:g}" if a == "sine" else a for a in hidden]
    last = spec.layers[-1].activation
    return f"{' / '.join(words)} after every hidden layer; output layer {'linear' if last == 'none' else last}"


def _layer_text(layer) -> str:
    if layer.kind == "conv":
        kh, kw = layer.kernel_size
        text = (f"conv {layer.in_features}->{layer.out_features} k{kh}x{kw} stride {layer.stride} "
                f"padding {layer.padding}")
    else:
        text = f"dense {layer.in_features}->{layer.out_features}"
    text += "" if layer.bias else " (no bias)"
    text += " + batchnorm" if layer.norm else ""
    return text + ("" if layer.activation == "none" else f" + {layer.activation}")


def input_convention(info) -> dict[str, Any]:
    """The input-convention card of a checkpoint trained on ``info`` (a :class:`DataInfo`): what a
    network file must be for ``nnzoo predict`` to mean anything.  Stored in every manifest entry.

    Built from the data's :class:`NetworkSpec` s and, for INRs, from the coordinate convention of
    :mod:`nnzoo.data.siren_fit` (the grid the offline builder and ``nnzoo inr fit`` use), so the
    numbers live in one place each.
    """
    from nnzoo.data.siren_fit import STATE_DICT_PREFIX, coordinate_convention
    from nnzoo.nets.graph_spec import GraphSpec
    specs = list(info.specs)
    spec = specs[0]
    classes = ", ".join(info.class_names or map(str, range(info.num_outputs)))
    target = {"classification": f"class of the image the network represents ({classes})",
              "editing": (f"a new network of the same architecture whose image is the input's, edited "
                          f"({info.extra.get('edit', 'see the dataset')}); output: the edited state dict "
                          "(the input's keys) and a PNG"),
              }.get(info.task, "the network's test accuracy in [0, 1] (prediction = sigmoid of the model output)")
    if info.coordinate_networks and "pack" not in info.extra:  # packed MLPs (nnzoo pack) are not INRs
        size = _inr_image_size(info)
        nfn = info.name in NFN_INR_DATASETS
        last = spec.num_layers - 1
        card: dict[str, Any] = {
            "kind": "INR", "architecture": spec.describe(), "widths": list(spec.widths),
            "activation": _activation_text(spec), "w0": spec.w0}
        if nfn:
            unknown = "as in the public NFN SIREN files (not recorded by nnzoo)"
            card.update(coordinate_order=unknown, coordinate_range=unknown, grid=unknown, intensity_range=unknown)
        else:
            card.update(coordinate_convention(*size) if size else coordinate_convention())
        card.update(
            output_offset=spec.output_offset,
            output=(f"output + {spec.output_offset:g} = pixel intensity" +
                    ("" if nfn else f" in [{card['intensity_range'][0]:g}, {card['intensity_range'][1]:g}]")),
            image_size=list(size) if size else "not recorded",
            image=("the dataset's images; MNIST digits are white strokes on black "
                   "(nnzoo inr fit --invert for dark-on-light drawings)"),
            state_dict=(f"net.{{i}}.linear.{{weight,bias}} (i < {last}), net.{last}.{{weight,bias}} (NFN keys)" if nfn
                        else f"{STATE_DICT_PREFIX}.{{i}}.weight (out, in) and {STATE_DICT_PREFIX}.{{i}}.bias (out,), "
                             f"i = 0..{last} (DWSNets INR keys)") +
                       "; tensors are read by name: '*weight' keys in file order are layers 0, 1, ...",
            target=target,
            make_your_own=("not available: nnzoo inr fit makes DWSNets-convention INRs, not NFN ones" if nfn else
                           "nnzoo inr fit IMAGE -o OUT.pth (Python: nnzoo.data.siren_fit.fit_image)"))
        grid = f"{size[0]}x{size[1]} " if size else ""
        if nfn:
            where = f"coordinates as in the NFN files; output + {spec.output_offset:g}"
        else:
            (lo, hi), (dark, bright) = card["coordinate_range"], card["intensity_range"]
            where = (f"{card['coordinate_order']} on a {grid}linspace({lo:g}, {hi:g}) grid, row-major; "
                     f"output + {spec.output_offset:g} = intensity in [{dark:g}, {bright:g}]; keys "
                     f"{STATE_DICT_PREFIX}.{{i}}.{{weight,bias}}; make one: nnzoo inr fit")
        card["summary"] = f"{spec.describe()} w0={spec.w0:g}; {where}"
        return card
    if any(isinstance(s, GraphSpec) for s in specs):  # networks read off modules, not layer chains
        return _graph_card(info, specs, target)
    layouts = list(dict.fromkeys(s.describe() for s in specs))
    activations = sorted({layer.activation for s in specs for layer in s.layers[:-1]})
    channels = sorted({s.num_inputs for s in specs})
    image_size = info.extra.get("build", {}).get("recipe", {}).get("image_size")
    same_layout_acts = len(activations) > 1 and info.homogeneous
    card = {
        "kind": "CNN" if any(s.is_conv for s in specs) else "MLP",
        "architectures": layouts,
        "layers": {s.describe(): [_layer_text(layer) for layer in s.layers] + [
            f"residual: group {src} added to group {dst} (group 0 = input, l + 1 = output of layer l; first "
            "min(C_src, C_dst) channels, after the activation)" for src, dst in s.residuals] for s in specs},
        "activations": activations,
        "input_channels": channels[0] if len(channels) == 1 else channels,
        "image_size": [image_size, image_size] if image_size else "not recorded (the zoo's own training images)",
        "forward": "each layer: conv or dense, then BatchNorm (running statistics), then the activation; "
                   "global average pooling before the first dense layer",
        "kernel_layout": "PyTorch: conv weight (out, in, kh, kw), dense weight (out, in), bias (out,), "
                         "BatchNorm weight/bias/running_mean/running_var (C,)",
        "state_dict": "a PyTorch state dict of the network (e.g. nn.Sequential keys 0.weight, 0.bias, ...); "
                      "tensors are read by name, layer weights in file order",
        "target": target,
    }
    if same_layout_acts:
        card["activation_choice"] = (f"a state dict does not record its activation: pass --activation "
                                     f"{'|'.join(activations)} to nnzoo predict")
    arch = layouts[0] if len(layouts) == 1 else f"{len(layouts)} architectures ({layouts[0]}, ...)"
    size_text = f", {image_size}x{image_size} images" if image_size else ""
    card["summary"] = (f"{arch}; activations {'/'.join(activations)}; {'/'.join(map(str, channels))} input "
                       f"channel(s){size_text}; weights (out, in, kh, kw); target: "
                       f"{'test accuracy in [0, 1]' if info.task == 'regression' else 'class'}"
                       + (f"; pass --activation {'|'.join(activations)}" if same_layout_acts else ""))
    return card


def _graph_card(info, specs: list, target: str) -> dict[str, Any]:
    """The card of a dataset of :class:`~nnzoo.nets.graph_spec.GraphSpec` s (networks read off modules by
    ``spec_from_module(..., graph=True)``): which modules, which inputs, which state dicts."""
    layouts = list(dict.fromkeys(s.name for s in specs))
    shapes = sorted({tuple(s.input_shape) for s in specs})
    recipe = info.extra.get("build", {}).get("recipe", {})
    card: dict[str, Any] = {"kind": "module graph", "architectures": layouts,
                            "graphs": [s.describe() for s in specs]}
    if isinstance(recipe.get("grid"), dict):  # built offline from nnzoo.nets.families
        card["families"] = {family: ", ".join(f"{k} {'/'.join(map(str, v))}" for k, v in sizes.items())
                            for family, sizes in recipe["grid"].items()}
        size = recipe.get("image_size")
        card["modules"] = (f"nnzoo.nets.families.build_network(arch, {size}): ZooViT, ZooResNet, ZooCNN or ZooMLP; "
                           "an architecture's name spells its arch dict (vit_depth=2_heads=2_patch=4_width=16 is "
                           '{"family": "vit", "depth": 2, "heads": 2, "patch": 4, "width": 16})')
        source = recipe.get("source", "mnist")
        card["input"] = (f"the shipped {source} digits (nnzoo.data.images.load_images({source!r})) scaled to "
                         f"[0, 1] and resized bilinearly (antialiased) to {size}x{size}, no further normalisation, "
                         f"shape (B, {', '.join(map(str, shapes[0]))})")
    card["input_shape"] = [list(s) for s in shapes] if len(shapes) > 1 else list(shapes[0])
    card["state_dict"] = ("the module's state_dict (torch.save(net.state_dict(), PATH)): every floating-point "
                          "tensor, read by name in the module's order (BatchNorm running statistics included)")
    card["matching"] = ("each file must be one of these architectures; other modules: read yours with "
                        "nnzoo.nets.spec_from_module(net, input_shape=..., graph=True), pack them with "
                        "nnzoo pack DIR --spec spec.json and train on them")
    card["target"] = target
    arch = layouts[0] if len(layouts) == 1 else f"{len(layouts)} architectures ({layouts[0]}, ...)"
    shape_text = "/".join("x".join(map(str, s)) for s in shapes) or "module inputs"
    card["summary"] = (f"{arch}; module state dicts read as graphs; inputs {shape_text}; target: "
                       f"{'test accuracy in [0, 1]' if info.task == 'regression' else 'class'}")
    return card


def format_convention(card: dict[str, Any] | None, indent: str = "  ") -> list[str]:
    """The lines of a card as shown by ``nnzoo list checkpoints --details`` and ``nnzoo predict --help``."""
    if not card:
        return [f"{indent}(no card)"]
    lines = []
    for key, value in card.items():
        if key == "summary":
            continue
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines += [f"{indent}  {k}: {'; '.join(v) if isinstance(v, list) else v}" for k, v in value.items()]
        else:
            lines.append(f"{indent}{key}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
    return lines
