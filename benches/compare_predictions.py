#!/usr/bin/env python3
"""Two predictions of the same input (e.g. one per --precision or --device), side by side:
CA RMSD and the largest CA deviation, in the frame both were predicted in (no superposition),
and the largest pLDDT difference (AlphaFold2's JSON has pLDDT; IgFold's has none).

    python3 benches/compare_predictions.py REF_DIR OTHER_DIR NAME

reads REF_DIR/NAME.pdb and .json and OTHER_DIR's. Issue 5's bar for the bf16 path against fp32:
CA RMSD within 0.5 Å and pLDDT within 1.
"""
import json
import math
import sys


def ca_atoms(path):
    """{(chain, residue number, insertion code): (x, y, z)} of the CA atoms of a PDB file."""
    out = {}
    for line in open(path):
        if line.startswith(("ATOM", "HETATM")) and line[12:16].strip() == "CA":
            key = (line[21], int(line[22:26]), line[26])
            out[key] = (float(line[30:38]), float(line[38:46]), float(line[46:54]))
    return out


def main():
    ref_dir, other_dir, name = sys.argv[1:4]
    ref, other = (ca_atoms(f"{d}/{name}.pdb") for d in (ref_dir, other_dir))
    if ref.keys() != other.keys():
        sys.exit(f"{name}: the two predictions have different residues")
    dev = [math.dist(ref[k], other[k]) for k in ref]
    rmsd = math.sqrt(sum(d * d for d in dev) / len(dev))
    plddt = [json.load(open(f"{d}/{name}.json")).get("plddt") for d in (ref_dir, other_dir)]
    line = f"{name}: {len(dev)} CA, RMSD {rmsd:.3f} Å, largest deviation {max(dev):.3f} Å"
    if all(plddt):
        line += f", largest pLDDT difference {max(abs(a - b) for a, b in zip(*plddt)):.3f}"
    print(line)


if __name__ == "__main__":
    main()
