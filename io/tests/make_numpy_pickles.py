#!/usr/bin/env python3
"""Writes the NumPy pickles used by ferrofold-io's `pickle_arrays` tests to io/tests/data/.

Needs python3 with numpy (e.g. `python3 -m venv /tmp/npvenv && /tmp/npvenv/bin/pip
install numpy`). Files:

- features_p{2,4}.pkl: a tiny AlphaFold2 `features.pkl` (raw data-pipeline features of
  the sequence ACDE with a 2-row MSA and one template), pickled with protocol 2 (bytes
  via `_codecs.encode`) and protocol 4 (as AlphaFold2's run_alphafold.py writes it).
- numpy_types_p{2,4,5}.pkl: every supported dtype and layout (Fortran order, big-endian,
  fixed-width bytes and str, object arrays, empty arrays, NumPy and Python scalars; with
  protocol 5, in-band `_frombuffer` buffers, including an order-'K' transposed array).
- evil_os_system.pkl: a dict whose value unpickles by calling `os.system`.
"""
import os
import pickle

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
RESTYPES = "ARNDCQEGHILKMFPSTWYV"


def features():
    seq = "ACDE"
    n = len(seq)
    aatype = np.zeros((n, 21), np.float32)
    aatype[np.arange(n), [RESTYPES.index(c) for c in seq]] = 1
    msa = np.array([[0, 4, 3, 6], [0, 4, 21, 6]], np.int32)
    return {
        "aatype": aatype,
        "between_segment_residues": np.zeros(n, np.int32),
        "domain_name": np.array([b"test_query"], dtype=np.object_),
        "residue_index": np.arange(n, dtype=np.int32),
        "seq_length": np.full(n, n, np.int32),
        "sequence": np.array([seq.encode()], dtype=np.object_),
        "deletion_matrix_int": np.array([[0, 0, 0, 0], [0, 2, 0, 1]], np.int32),
        "msa": msa,
        "num_alignments": np.full(n, 2, np.int32),
        "msa_species_identifiers": np.array([b"", b"HUMAN"], dtype=np.object_),
        "template_aatype": np.eye(22, dtype=np.float32)[[0, 4, 3, 6]][None],
        "template_all_atom_masks": (np.arange(n * 37) % 2).astype(np.float32).reshape(1, n, 37),
        "template_all_atom_positions": (np.arange(n * 37 * 3, dtype=np.float32) * 0.5).reshape(1, n, 37, 3),
        "template_domain_names": np.array([b"1abc_A"], dtype=np.object_),
        "template_sequence": np.array([b"ACDE"], dtype=np.object_),
        "template_sum_probs": np.array([[42.5]], np.float32),
    }


def numpy_types():
    return {
        "f32": np.array([[1.5, -2.0, 3.25], [4.0, 5.5, -6.75]], np.float32),
        "fortran_f64": np.asfortranarray(np.arange(6, dtype="<f8").reshape(2, 3)),
        "fortran_i16_3d": np.asfortranarray(np.arange(24, dtype="<i2").reshape(2, 3, 4)),
        "big_i4": np.array([1, -2, 300000], dtype=">i4"),
        "big_f8": np.array([[0.5, -1.25]], dtype=">f8"),
        "transposed_u2": np.arange(24, dtype="<u2").reshape(2, 3, 4).transpose(1, 0, 2),
        "bool": np.array([True, False, True]),
        "u1": np.array([0, 255], np.uint8),
        "i8": np.array([-(2**40), 7], np.int64),
        "f16": np.array([0.5, -3.0], np.float16),
        "empty": np.zeros((0, 3), np.float32),
        "bytes_S": np.array([b"ab", b"c", b""]),
        "text_U": np.array(["h\u00e9", "x"]),
        "big_text_U": np.array(["\u00e9t\u00e9"], dtype=">U3"),
        "objects_2d_fortran": np.asfortranarray(np.array([[b"a", b"bb", "c\u00e9"], [b"", b"e", b"f"]], dtype=object)),
        "objects_empty": np.array([], dtype=object),
        "np_int32": np.int32(-7),
        "np_float64": np.float64(2.5),
        "np_bool": np.bool_(True),
        "np_bytes": np.bytes_(b"xy"),
        "np_str": np.str_("z\u00e9"),
        "py_int": 12,
        "py_float": -0.125,
        "py_str": "hello",
        "py_bytes": b"raw",
        "py_bool": False,
    }


class OsSystem:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def write(name, obj, protocol):
    with open(os.path.join(OUT, name), "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def main():
    for p in (2, 4):
        write(f"features_p{p}.pkl", features(), p)
    for p in (2, 4, 5):
        write(f"numpy_types_p{p}.pkl", numpy_types(), p)
    write("evil_os_system.pkl", {"aatype": np.zeros(2, np.float32), "x": OsSystem()}, 4)


if __name__ == "__main__":
    main()
