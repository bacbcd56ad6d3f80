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

import importlib.util
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml
from numpy.typing import NDArray
from scipy.special import expit

from collector.errors import AnalysisError

F32 = NDArray[np.float32]

CLASSIFIERS = ("wrn-gru-mesa", "ws-gru-mesa", "wrn-gru-mesa-weighted")


def classifiers_dir() -> Path:
    """The installed sleepecg's ``classifiers`` folder, found without importing sleepecg (~1.5 s)."""
    spec = importlib.util.find_spec("sleepecg")
    if spec is None or not spec.submodule_search_locations:
        raise AnalysisError("sleepecg is not installed; reinstall magsleep (pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))) / "classifiers"


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
        return predict_many([(self, features)])[0]

    def _inputs(self, features: NDArray[Any]) -> tuple[F32, NDArray[np.bool_]]:
        """Masking -> BatchNormalization -> Dense -> ReLU: the GRU input and the time-step mask."""
        x = np.array(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.bn_gamma.shape[0]:
            n_feat = self.bn_gamma.shape[0]
            raise AnalysisError(f"{self.name} needs a (n_epochs, {n_feat}) feature matrix, got {x.shape}")
        x[~np.isfinite(x)] = np.float32(self.mask_value)
        mask = np.any(x != np.float32(self.mask_value), axis=1)
        inv = (self.bn_gamma / np.sqrt(self.bn_var + np.float32(self.bn_eps))).astype(np.float32)
        h = (x - self.bn_mean) * inv + self.bn_beta
        h = np.maximum(h @ self.dense_w + self.dense_b, np.float32(0))
        return h, mask

    def _outputs(self, h: F32) -> F32:
        logits = h @ self.out_w + self.out_b
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        p: F32 = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return p


def predict_many(jobs: Sequence[tuple[GruClassifier, NDArray[Any]]]) -> list[F32]:
    """``clf.predict_proba(features)`` for several classifiers at once (same as one by one).

    Jobs with as many epochs and as many GRU units (the shipped models have 8) run their
    recurrences in one loop: every step is a handful of NumPy calls whatever the number of
    sequences, so staging wake/sleep and NREM/REM together halves the GRU time.
    """
    prepared = [clf._inputs(f) for clf, f in jobs]
    out: list[F32 | None] = [None] * len(jobs)
    groups: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    for k, ((clf, _), (h, _)) in enumerate(zip(jobs, prepared, strict=True)):
        key = (h.shape[0], tuple(g.units for pair in clf.gru for g in pair))
        groups.setdefault(key, []).append(k)
    for idx in groups.values():
        hs = [prepared[k][0] for k in idx]
        masks = [prepared[k][1] for k in idx]
        for layer in range(len(jobs[idx[0]][0].gru)):
            hs = _run_bigru([jobs[k][0].gru[layer] for k in idx], hs, masks)
        for k, h in zip(idx, hs, strict=True):
            out[k] = jobs[k][0]._outputs(h)
    return [p for p in out if p is not None]


def _run_bigru(layers: Sequence[tuple[_Gru, _Gru]], xs: Sequence[F32], masks: Sequence[NDArray[np.bool_]]) -> list[F32]:
    """Keras Bidirectional(GRU, reset_after=True, merge concat) of several sequences in one loop.

    ``layers[k]`` (forward, backward) runs on ``xs[k]`` (all of the same length and units). Step
    ``i`` advances every forward GRU at time ``i`` and every backward one at ``n - 1 - i`` (all are
    independent), so each NumPy call does the work of all directions. Masked time steps keep the
    state and output zeros (keras ``zero_output_for_mask=True``). The recurrent bias rides along
    as an extra state column fixed at 1, and every step writes into preallocated buffers: with 8
    units, the cost of a step is the number of NumPy calls, not arithmetic.
    """
    n, u = xs[0].shape[0], layers[0][0].units
    u2 = 2 * u
    gs = [g for pair in layers for g in pair]  # directions: f0, b0, f1, b1, ...
    nd = len(gs)
    # input projections for all steps; backward ones reversed so that all run on index i
    xin = np.stack([xs[k // 2] @ g.kernel + g.bias_in for k, g in enumerate(gs)])  # (nd, n, 3u)
    xin[1::2] = xin[1::2, ::-1]
    xzr = np.ascontiguousarray(xin[:, :, :u2].transpose(1, 0, 2))[:, :, np.newaxis, :]  # (n, nd, 1, 2u)
    xh = np.ascontiguousarray(xin[:, :, u2:].transpose(1, 0, 2))[:, :, np.newaxis, :]  # (n, nd, 1, u)
    # [h, 1] @ [[recurrent], [bias_rec]] = h @ recurrent + bias_rec, all three gates at once
    rec = np.stack([np.vstack((g.recurrent, g.bias_rec[np.newaxis, :])) for g in gs]).astype(np.float32)
    md = np.stack([m[::-1] if k % 2 else m for k, m in enumerate(masks[k // 2] for k in range(nd))], axis=1)
    all_on = bool(np.all(md))
    out = np.zeros((n, nd, 1, u), dtype=np.float32)
    state = np.zeros((nd, 1, u + 1), dtype=np.float32)
    state[:, :, u] = 1.0
    h = state[:, :, :u]
    hr = np.empty((nd, 1, 3 * u), dtype=np.float32)
    zr = np.empty((nd, 1, u2), dtype=np.float32)
    hh = np.empty((nd, 1, u), dtype=np.float32)
    d = np.empty((nd, 1, u), dtype=np.float32)
    z, r, hr_h = zr[:, :, :u], zr[:, :, u:], hr[:, :, u2:]
    keep = np.empty((nd, 1, u), dtype=np.float32)
    for i in range(n):
        if not all_on:
            np.copyto(keep, h)
        np.matmul(state, rec, out=hr)
        np.add(xzr[i], hr[:, :, :u2], out=zr)
        expit(zr, out=zr)
        np.multiply(r, hr_h, out=hh)
        np.add(hh, xh[i], out=hh)
        np.tanh(hh, out=hh)
        np.subtract(h, hh, out=d)
        np.multiply(z, d, out=d)
        np.add(hh, d, out=h)  # z * h + (1 - z) * hh
        if all_on:
            out[i] = h
        else:
            on = md[i]
            out[i, on] = h[on]
            off = ~on
            h[off] = keep[off]  # a masked step keeps the state; its output stays zero
    o = out[:, :, 0, :]
    return [np.concatenate((o[:, 2 * k], o[::-1, 2 * k + 1]), axis=1) for k in range(len(layers))]


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
