"""Words for the class-space encoder: each phrase names one or more classes.

Without a vision-language model (none can be downloaded here; one plugs in by
`open_vocab.encoder`), text reaches the map through this table: synonyms of each
ScanNet-20 class and a few words for groups of them ("furniture", "somewhere to sit").
Entries whose classes are not in the configured class list are ignored, a class name is
always its own word, and a YAML file of the same shape (`open_vocab.lexicon`) adds to or
overrides entries.
"""
from __future__ import annotations

from typing import Dict, List

_FURNITURE = ["cabinet", "bed", "chair", "sofa", "table", "bookshelf", "counter", "desk", "otherfurniture"]

BUILTIN: Dict[str, List[str]] = {
    # one class each
    "walls": ["wall"], "partition": ["wall"],
    "ground": ["floor"], "flooring": ["floor"], "carpet": ["floor"], "rug": ["floor"],
    "cupboard": ["cabinet"], "wardrobe": ["cabinet"], "closet": ["cabinet"], "drawers": ["cabinet"],
    "kitchen cabinet": ["cabinet"],
    "mattress": ["bed"], "bunk": ["bed"], "cot": ["bed"],
    "stool": ["chair"], "armchair": ["chair"], "office chair": ["chair"],
    "couch": ["sofa"], "settee": ["sofa"], "loveseat": ["sofa"],
    "coffee table": ["table"], "dining table": ["table"], "side table": ["table"],
    "doorway": ["door"], "entrance": ["door"], "exit": ["door"],
    "windowpane": ["window"], "pane": ["window"], "glass": ["window"],
    "bookcase": ["bookshelf"], "shelf": ["bookshelf"], "shelves": ["bookshelf"], "books": ["bookshelf"],
    "painting": ["picture"], "photo": ["picture"], "photograph": ["picture"], "poster": ["picture"],
    "frame": ["picture"], "artwork": ["picture"], "art": ["picture"],
    "countertop": ["counter"], "worktop": ["counter"], "kitchen counter": ["counter"],
    "workstation": ["desk"], "writing desk": ["desk"],
    "drapes": ["curtain"], "blinds": ["curtain"],
    "fridge": ["refrigerator"], "freezer": ["refrigerator"],
    "wc": ["toilet"], "loo": ["toilet"], "lavatory": ["toilet"],
    "basin": ["sink"], "washbasin": ["sink"],
    "bath": ["bathtub"], "tub": ["bathtub"],
    "other furniture": ["otherfurniture"],
    # groups
    "furniture": _FURNITURE,
    "seat": ["chair", "sofa"], "seating": ["chair", "sofa"], "sit": ["chair", "sofa"],
    "sleep": ["bed"],
    "storage": ["cabinet", "bookshelf", "refrigerator"],
    "surface": ["table", "desk", "counter"], "work surface": ["table", "desk", "counter"],
    "opening": ["door", "window"],
    "appliance": ["refrigerator"],
    "fixture": ["toilet", "sink", "bathtub"], "plumbing": ["toilet", "sink", "bathtub"],
    "bathroom": ["toilet", "sink", "bathtub", "shower curtain"],
    "kitchen": ["counter", "refrigerator", "sink", "cabinet"],
    "fabric": ["curtain", "shower curtain", "sofa", "bed"],
    "structure": ["wall", "floor", "door", "window"],
}

# Words a query may carry that name nothing ("show me the ...", "where is a ...").
STOP_WORDS = frozenset(
    "a an the some any all of to on in at with my me show find where is are was there "
    "please something thing things object objects one ones somewhere can i you we it "
    "that this these those for and or".split())
