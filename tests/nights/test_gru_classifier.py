"""The NumPy forward pass and feature path against keras's own predictions (stored reference)."""

from __future__ import annotations

from datetime import time as dtime
from pathlib import Path

import numpy as np
import pytest
from sleepecg.feature_extraction import extract_features as sleepecg_features
from sleepecg.io.sleep_readers import SleepRecord, SubjectData

from collector.nights.gru_classifier import load_classifier
from collector.nights.staging import Subject, extract_features

REF = Path(__file__).parent / "data" / "staging_reference.npz"
CLASSIFIERS = ("wrn-gru-mesa", "ws-gru-mesa")


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return dict(np.load(REF))


def _case(ref: dict[str, np.ndarray], i: int) -> tuple[np.ndarray, dtime, Subject]:
    start, age, gender = (int(x) for x in ref[f"case{i}_meta"])
    hb = np.concatenate(([0.0], np.cumsum(ref[f"case{i}_rr"].astype(np.int64)) / 1024))
    return hb, dtime(start // 3600, start % 3600 // 60, start % 60), Subject(age, "male" if gender else "female")


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize("case", [0, 1, 2])
def test_end_to_end_matches_keras_stage(ref, name, case):
    """Our features + NumPy pass vs sleepecg.stage() through keras on the same heartbeats."""
    hb, start, subj = _case(ref, case)
    clf = load_classifier(name)
    feats = extract_features(hb, int(hb[-1] // 30), start, subj, clf.feature_extraction_params)
    p = clf.predict_proba(feats)
    want = ref[f"case{case}_prob_{name}"]
    assert p.shape == want.shape
    assert np.max(np.abs(p - want)) < 1e-5
    assert np.array_equal(p.argmax(1), want.argmax(1))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_reference_is_not_trivially_one_class(ref, name):
    labels = np.concatenate([ref[f"case{i}_prob_{name}"].argmax(1) for i in range(3)])
    assert len(np.unique(labels)) >= 2


@pytest.mark.parametrize("kind", ["crash", "masked"])
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_forward_pass_matches_keras_predict(ref, name, kind):
    """Feature matrices with masked cells and fully masked time steps, vs keras model.predict."""
    clf = load_classifier(name)
    x = ref[f"{kind}_features_{name}"]
    p = clf.predict_proba(x)
    want = ref[f"{kind}_prob_{name}"]
    assert np.max(np.abs(p - want)) < 1e-5
    assert np.array_equal(p.argmax(1), want.argmax(1))


@pytest.mark.parametrize("case", [0, 1])
def test_features_equal_sleepecg_extract_features(ref, case):
    hb, start, subj = _case(ref, case)
    clf = load_classifier("wrn-gru-mesa")
    rec = SleepRecord(heartbeat_times=hb, recording_start_time=start,
                      subject_data=SubjectData(gender=subj.gender, age=subj.age))
    with pytest.warns(RuntimeWarning):
        want = sleepecg_features([rec], **clf.feature_extraction_params)[0][0]
    got = extract_features(hb, int(hb[-1] // 30), start, subj, clf.feature_extraction_params)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=0)
    np.testing.assert_array_equal(got[:, :26], want[:, :26])  # time domain: bit-identical


def test_feature_helpers_equal_sleepecg():
    """magsleep's copies of sleepecg's feature groups and helpers (importing sleepecg takes ~1.5 s)."""
    import sleepecg.feature_extraction as fe

    from collector.nights.gru_classifier import classifiers_dir
    from collector.nights.staging import FEATURE_GROUPS, parse_feature_selection, preprocess_rri

    for group, group_ids in FEATURE_GROUPS.items():
        assert fe._FEATURE_GROUPS[group] == group_ids
    for sel in (["hrv-time", "hrv-frequency", "recording_start_time", "age", "gender"], ["LF", "meanNN", "age"]):
        groups, ids, cols = parse_feature_selection(sel)
        want_groups, want_ids, want_cols = fe._parse_feature_selection(sel)
        assert set(groups) == set(want_groups) and ids == want_ids
        ours = [f for g in groups for f in FEATURE_GROUPS[g]]
        theirs = [f for g in want_groups for f in fe._FEATURE_GROUPS[g]]
        assert [ours[c] for c in cols] == [theirs[c] for c in want_cols] == ids
    rri = np.array([0.5, 0.2, 0.8, 2.5, np.nan, 0.6])
    np.testing.assert_array_equal(preprocess_rri(rri, 0.3, 2), fe.preprocess_rri(rri, 0.3, 2))
    assert classifiers_dir() == Path(fe.__file__).parent / "classifiers"


def test_crash_case_raises_in_sleepecg_and_not_here(ref):
    rr = ref["crash_rr"].astype(np.int64)
    hb = np.concatenate(([0.0], np.cumsum(rr) / 1024))
    clf = load_classifier("wrn-gru-mesa")
    rec = SleepRecord(heartbeat_times=hb, recording_start_time=dtime(23), subject_data=SubjectData(gender=0, age=40))
    with pytest.raises(ValueError, match="shape mismatch"):
        sleepecg_features([rec], **clf.feature_extraction_params)
    feats = extract_features(hb, int(hb[-1] // 30), dtime(23), Subject(40, "female"), clf.feature_extraction_params)
    assert feats.shape == (int(hb[-1] // 30), 36)
    assert np.isfinite(feats[:, :26]).mean() > 0.9  # time-domain features exist where beats exist


@pytest.mark.parametrize("kind", ["crash", "masked"])
def test_both_classifiers_at_once_match_keras_and_one_by_one(ref, kind):
    """predict_many runs the two models' GRUs in one loop: same numbers as alone, and as keras.

    The two models see different masked steps (their own feature matrices), and a third job with
    a different length runs on its own."""
    from collector.nights.gru_classifier import predict_many

    clfs = [load_classifier(n) for n in CLASSIFIERS]
    xs = [ref[f"{kind}_features_{n}"] for n in CLASSIFIERS]
    n = min(x.shape[0] for x in xs)
    xs = [x[:n] for x in xs]
    xs[1] = xs[1].copy()
    xs[1][n // 3 : n // 3 + 7] = clfs[1].mask_value  # masked steps where the other model has data
    short = xs[0][: n // 2]
    got = predict_many([(clfs[0], xs[0]), (clfs[1], xs[1]), (clfs[0], short)])
    alone = [clfs[0].predict_proba(xs[0]), clfs[1].predict_proba(xs[1]), clfs[0].predict_proba(short)]
    for g, a in zip(got, alone, strict=True):
        np.testing.assert_allclose(g, a, rtol=0, atol=1e-6)
        assert np.array_equal(g.argmax(1), a.argmax(1))
    if n == ref[f"{kind}_features_{CLASSIFIERS[0]}"].shape[0]:
        assert np.max(np.abs(got[0] - ref[f"{kind}_prob_{CLASSIFIERS[0]}"])) < 1e-5


def test_safe_frequency_features_equal_sleepecg_when_it_works(ref):
    from sleepecg.feature_extraction import _hrv_frequencydomain_features, preprocess_rri

    from collector.nights.staging import _freq_features_safe

    hb, _, _ = _case(ref, 0)
    rri = preprocess_rri(np.diff(hb), 0.3, 2)
    rri[500:530] = np.nan  # some windows partly missing
    st = np.arange(int(hb[-1] // 30)) * 30
    with np.errstate(all="ignore"):
        want = _hrv_frequencydomain_features(rri, hb[1:], st, 120, 150, 4, 0.5)
        got = _freq_features_safe(rri, hb[1:], st, 120, 150, 4, 0.5)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=0)
    assert np.array_equal(np.isnan(got), np.isnan(want))


def test_fast_periodogram_equals_scipy():
    from scipy.signal import periodogram

    from collector.nights.staging import _periodogram_hann

    rng = np.random.default_rng(0)
    for m in (541, 700, 1079, 1080):
        x = rng.normal(1.0, 0.05, m)
        for nfft in (1080, 2040, 1081):
            _, want = periodogram(x, fs=4, window="hann", nfft=nfft)
            np.testing.assert_allclose(_periodogram_hann(x, 4, nfft), want, rtol=1e-11, atol=1e-300)


def test_fast_periodogram_of_rows_equals_scipy():
    from scipy.signal import periodogram

    from collector.nights.staging import _periodogram_rows

    rng = np.random.default_rng(1)
    for m in (1080, 2040, 1081):
        x = rng.normal(1.0, 0.05, (7, m))
        f, want = periodogram(x, fs=4)
        # the DC bin is rounding noise (~1e-32) after detrending, everything else ~1e-4
        np.testing.assert_allclose(_periodogram_rows(x, 4), want, rtol=1e-12, atol=1e-25)
        np.testing.assert_array_equal(np.fft.rfftfreq(m, 1 / 4), f)


def test_unknown_classifier_is_a_clear_error():
    from collector.errors import AnalysisError

    with pytest.raises(AnalysisError, match="not found"):
        load_classifier("nope")
