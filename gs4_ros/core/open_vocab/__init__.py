"""Open-vocabulary queries after SegSplat: a memory bank of region embeddings, one bank
id per Gaussian, text scored against the bank."""
from .bank import VocabBank
from .encoders import ClassSpaceEncoder, Regions, TextEmbedding, UnknownQuery, load_encoder
from .instances import Instance, split_instances
from .query import QueryResult, query_map
from .regions import assign_bank_ids, keyframe_regions

__all__ = ["VocabBank", "ClassSpaceEncoder", "Regions", "TextEmbedding", "UnknownQuery", "load_encoder",
           "QueryResult", "query_map", "assign_bank_ids", "keyframe_regions", "Instance", "split_instances"]
