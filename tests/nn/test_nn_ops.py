"""test_ops.py's table-driven properties, run over nn.functional's ops (nn_op_table.py).

Each test here is test_ops.py's test body (as hypothesis keeps it, ``.hypothesis.inner_test``), given
the specs of ``NN_OPS`` instead of the autograd table: one set of checks for both tables.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import test_ops as table_tests  # tests/autograd/test_ops.py (see conftest.py)
from hypothesis import given, settings
from hypothesis import strategies as st
from nn_op_table import NN_OPS
from op_table import OpSpec

from xpgrad import autograd as ag

FD_OPS = [s for s in NN_OPS if s.finite_differences]
SECOND_ORDER_OPS = [s for s in FD_OPS if s.second_order]
TORCH_OPS = [s for s in NN_OPS if s.torch is not None]
over = table_tests.over


def _body(test):
    return test.hypothesis.inner_test


@over(NN_OPS)
@given(data=st.data())
def test_forward_matches_numpy(spec, data):
    _body(table_tests.test_forward_matches_numpy)(spec, data)


@over(FD_OPS)
@given(data=st.data())
def test_gradcheck(spec, data):
    _body(table_tests.test_gradcheck)(spec, data)


@over(SECOND_ORDER_OPS)
@settings(max_examples=max(1, settings.default.max_examples * 3 // 5))  # as test_ops: 15 in ci
@given(data=st.data())
def test_gradgradcheck(spec, data):
    _body(table_tests.test_gradgradcheck)(spec, data)


@over(TORCH_OPS)
@given(data=st.data())
def test_matches_torch(spec, data):
    _body(table_tests.test_matches_torch)(spec, data)


@over(NN_OPS)
@given(data=st.data())
def test_float32_inputs_get_float32_gradients(spec, data):
    _body(table_tests.test_float32_inputs_get_float32_gradients)(spec, data)


def _one_output(spec: OpSpec) -> OpSpec:
    """``spec`` with its outputs flattened into one. The check below backpropagates each output on its
    own, twice, and wants .grad to double exactly; for outputs that share inputs' gradients (the LSTM's
    output and final states) the second round adds the same terms in another order, off by an ulp."""

    def fn(*args, **kwargs):
        outs = spec.fn(*args, **kwargs)
        return ag.concatenate([o.reshape(-1) for o in outs]) if isinstance(outs, tuple) else outs

    def ref(*args, **kwargs):
        outs = spec.ref(*args, **kwargs)
        return np.concatenate([np.reshape(o, -1) for o in outs]) if isinstance(outs, list) else outs

    return dataclasses.replace(spec, fn=fn, ref=ref, torch=None)


@over([_one_output(s) for s in NN_OPS])
@given(data=st.data())
def test_inputs_untouched_and_gradients_not_aliased(spec, data):
    _body(table_tests.test_inputs_untouched_and_gradients_not_aliased)(spec, data)
