"""sleepecg's shipped GRU classifiers, run as a plain NumPy forward pass (no keras, no torch).

sleepecg 0.6.0 ships ``classifiers/<name>.zip`` holding ``info.yml`` and ``classifier.keras``, itself
a zip with ``config.json`` and ``model.weights.h5``. All three models share one architecture:
Masking(-1) -> BatchNormalization -> Dense(64) -> ReLU -> Bidirectional(GRU 8) ->
Bidirectional(GRU 8) -> Dense(softmax). This module reads the weights with h5py and evaluates that
graph exactly as keras 3 does (GRU with ``reset_after=True``; masked time steps keep the state
and output zeros). Equivalence with keras is tested against stored reference outputs produced
by scripts/make-staging-reference.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml
from numpy.typing import NDArray

from collector.errors import AnalysisError

F32 = NDArray[np.float32]

CLASSIFIERS = ("wrn-gru-mesa", "ws-gru-mesa", "wrn-gru-mesa-weighted")


def classifiers_dir() -> Path:
    import sleepecg

    return Path(sleepecg.__file__).parent / "classifiers"


@dataclass(frozen=True, slots=True)
class _Gru:
    kernel: F32  # (in, 3u), gate order z, r, h
    recurrent: F32  # (u, 3u)
    bias_in: F32  # (3u,)
    bias_rec: F32  # (3u,)

    @property
    def units(self) -> int:
        return int(self.recurrent.shape[0])


@dataclass(frozen=True, slots=True)
class GruClassifier:
    """One shipped classifier: weights plus the metadata sleepecg stores with it."""

    name: str
    stages_mode: str
    feature_extraction_params: dict[str, Any]
    mask_value: float
    bn_gamma: F32
    bn_beta: F32
    bn_mean: F32
    bn_var: F32
    bn_eps: float
    dense_w: F32
    dense_b: F32
    gru: tuple[tuple[_Gru, _Gru], ...]  # (forward, backward) per bidirectional layer
    out_w: F32
    out_b: F32

    def predict_proba(self, features: NDArray[Any]) -> F32:
        """Class probabilities per epoch, shape ``(n_epochs, n_classes)`` (class 0 = undefined).

        ``features`` is the sleepecg feature matrix; non-finite values are replaced by the mask
        value first, as ``sleepecg.stage`` does.
        """
        x = np.array(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.bn_gamma.shape[0]:
            n_feat = self.bn_gamma.shape[0]
            raise AnalysisError(f"{self.name} needs a (n_epochs, {n_feat}) feature matrix, got {x.shape}")
        x[~np.isfinite(x)] = np.float32(self.mask_value)
        mask = np.any(x != np.float32(self.mask_value), axis=1)
        inv = (self.bn_gamma / np.sqrt(self.bn_var + np.float32(self.bn_eps))).astype(np.float32)
        h = (x - self.bn_mean) * inv + self.bn_beta
        h = np.maximum(h @ self.dense_w + self.dense_b, np.float32(0))
        for fwd, bwd in self.gru:
            out_f = _run_gru(fwd, h, mask, reverse=False)
            out_b = _run_gru(bwd, h, mask, reverse=True)
            h = np.concatenate((out_f, out_b), axis=1)
        logits = h @ self.out_w + self.out_b
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        p: F32 = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return p


def _run_gru(g: _Gru, x: F32, mask: NDArray[np.bool_], *, reverse: bool) -> F32:
    """Keras GRU (reset_after=True), returning the sequence in input order."""
    n, u = x.shape[0], g.units
    u2 = 2 * u
    xin = x @ g.kernel + g.bias_in  # all input projections at once
    xzr = xin[:, :u2]
    xh = xin[:, u2:]
    rec, brec = g.recurrent, g.bias_rec
    out = np.zeros((n, u), dtype=np.float32)
    h = np.zeros(u, dtype=np.float32)
    one = np.float32(1)
    steps = range(n - 1, -1, -1) if reverse else range(n)
    for t in steps:
        if not mask[t]:
            continue  # state carried over, output zero (zero_output_for_mask=True)
        inner = h @ rec + brec
        zr = one / (one + np.exp(-(xzr[t] + inner[:u2])))
        z = zr[:u]
        hh = np.tanh(xh[t] + zr[u:] * inner[u2:])
        h = z * h + (one - z) * hh
        out[t] = h
    return out


def _gru_from(grp: Any) -> _Gru:
    v = grp["cell"]["vars"]
    b = np.asarray(v["2"], dtype=np.float32)
    return _Gru(
        kernel=np.asarray(v["0"], dtype=np.float32),
        recurrent=np.asarray(v["1"], dtype=np.float32),
        bias_in=b[0],
        bias_rec=b[1],
    )


@cache
def load_classifier(name: str = "wrn-gru-mesa") -> GruClassifier:
    """Read a classifier shipped with the installed sleepecg (cached per process)."""
    path = classifiers_dir() / f"{name}.zip"
    if not path.is_file():
        raise AnalysisError(f"sleepecg classifier {name!r} not found at {path}; known: {', '.join(CLASSIFIERS)}")
    with zipfile.ZipFile(path) as outer:
        info = yaml.safe_load(outer.read("info.yml"))
        with zipfile.ZipFile(io.BytesIO(outer.read("classifier.keras"))) as inner:
            config = json.loads(inner.read("config.json"))
            weights = inner.read("model.weights.h5")
    layers = [layer["class_name"] for layer in config["config"]["layers"]]
    expected = ["InputLayer", "Masking", "BatchNormalization", "Dense", "ReLU",
                "Bidirectional", "Bidirectional", "Dense"]
    if layers != expected:
        raise AnalysisError(f"{name}: unexpected layer stack {layers}; this NumPy port supports {expected}")
    by_name = {layer["config"].get("name"): layer["config"] for layer in config["config"]["layers"]}
    for cfg in by_name.values():
        inner_cfg = cfg.get("layer")
        if inner_cfg is not None and not inner_cfg["config"].get("reset_after", False):
            raise AnalysisError(f"{name}: GRU without reset_after is not supported")
    with h5py.File(io.BytesIO(weights), "r") as f:
        lay = f["layers"]
        bn = [np.asarray(lay["batch_normalization"]["vars"][str(i)], dtype=np.float32) for i in range(4)]
        gru = tuple(
            (_gru_from(lay[b]["forward_layer"]), _gru_from(lay[b]["backward_layer"]))
            for b in ("bidirectional", "bidirectional_1")
        )
        clf = GruClassifier(
            name=name,
            stages_mode=str(info["stages_mode"]),
            feature_extraction_params=dict(info["feature_extraction_params"]),
            mask_value=float(info.get("mask_value", -1)),
            bn_gamma=bn[0],
            bn_beta=bn[1],
            bn_mean=bn[2],
            bn_var=bn[3],
            bn_eps=float(by_name["batch_normalization"]["epsilon"]),
            dense_w=np.asarray(lay["dense"]["vars"]["0"], dtype=np.float32),
            dense_b=np.asarray(lay["dense"]["vars"]["1"], dtype=np.float32),
            gru=gru,
            out_w=np.asarray(lay["dense_1"]["vars"]["0"], dtype=np.float32),
            out_b=np.asarray(lay["dense_1"]["vars"]["1"], dtype=np.float32),
        )
    return clf
