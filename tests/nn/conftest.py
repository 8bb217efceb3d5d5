"""The nn tests reuse the autograd op-table machinery: tests/autograd (op_table.py, test_ops.py) is
importable from here (nn_op_table.py builds on op_table; test_nn_ops.py runs test_ops' test bodies)."""
import sys
from pathlib import Path

_AUTOGRAD_TESTS = str(Path(__file__).resolve().parents[1] / "autograd")
if _AUTOGRAD_TESTS not in sys.path:
    sys.path.insert(0, _AUTOGRAD_TESTS)
