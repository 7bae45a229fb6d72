#!/usr/bin/env python3
"""Reads PDB/mmCIF files written by ferrofold-io with Biopython and gemmi.

Usage: check_structure.py FILE [FILE ...]   (.pdb, or .cif for mmCIF)

Fails (exit 1) when a reader raises or warns, when Biopython and gemmi disagree on
the atoms, when mmCIF entities do not match the chains, or when the files passed
together describe different atoms. Prints one line per file:
    OK <file> chains=<n> residues=<n> atoms=<n>
Needs: gemmi, biopython (numpy comes with biopython).
"""
import sys
import warnings

import gemmi
from Bio.PDB import MMCIFParser, PDBParser


def biopython_atoms(path):
    """(chain, resname, resseq, atom, element, x, y, z, occupancy, b) per atom."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if path.endswith(".pdb"):
            parser = PDBParser(PERMISSIVE=False, QUIET=False)
        else:
            parser = MMCIFParser(QUIET=False)
        structure = parser.get_structure("x", path)
    models = list(structure)
    if len(models) != 1:
        raise AssertionError(f"Biopython: expected 1 model, got {len(models)}")
    return [
        (chain.id, res.get_resname(), res.id[1], atom.get_name(), atom.element,
         *map(float, atom.coord), atom.get_occupancy(), atom.get_bfactor())
        for chain in models[0] for res in chain for atom in res
    ]


def gemmi_atoms(structure):
    if len(structure) != 1:
        raise AssertionError(f"gemmi: expected 1 model, got {len(structure)}")
    return [
        (chain.name, res.name, res.seqid.num, atom.name, atom.element.name.upper(),
         atom.pos.x, atom.pos.y, atom.pos.z, atom.occ, atom.b_iso)
        for chain in structure[0] for res in chain for atom in res
    ]


def check_entities(structure, path):
    """Every polymer chain has an entity whose sequence equals its residues."""
    if not structure.entities:
        raise AssertionError(f"{path}: gemmi found no _entity records")
    for chain in structure[0]:
        polymer = chain.get_polymer()
        entity = structure.get_entity_of(polymer)
        if entity is None:
            raise AssertionError(f"{path}: chain {chain.name} has no entity")
        names = [res.name for res in chain]
        if list(entity.full_sequence) != names:
            raise AssertionError(
                f"{path}: entity {entity.name} sequence {list(entity.full_sequence)} "
                f"!= chain {chain.name} residues {names}")


def same_atoms(a, b, what):
    if len(a) != len(b):
        raise AssertionError(f"{what}: {len(a)} vs {len(b)} atoms")
    for x, y in zip(a, b):
        if x[:5] != y[:5] or any(abs(p - q) > 1e-3 for p, q in zip(x[5:], y[5:])):
            raise AssertionError(f"{what}: {x} != {y}")


def check(path):
    bio = biopython_atoms(path)
    gem = gemmi_atoms(gemmi.read_structure(path))
    same_atoms(bio, gem, f"{path}: Biopython vs gemmi")
    if not path.endswith(".pdb"):
        doc = gemmi.cif.read(path)
        doc.check_for_missing_values()
        doc.check_for_duplicates()
        from_block = gemmi.make_structure_from_block(doc.sole_block())
        same_atoms(gem, gemmi_atoms(from_block), f"{path}: read_structure vs block")
        check_entities(from_block, path)
    chains = {a[0] for a in bio}
    residues = {a[:3] for a in bio}
    print(f"OK {path} chains={len(chains)} residues={len(residues)} atoms={len(bio)}")
    return bio


def main(paths):
    if not paths:
        sys.exit(__doc__)
    first = None
    for path in paths:
        atoms = check(path)
        if first is None:
            first = (path, atoms)
        else:
            same_atoms(first[1], atoms, f"{first[0]} vs {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
