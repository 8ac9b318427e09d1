"""The Parse data model: wire types, update operations, schema rules and parsed queries.

Nothing outside this package encodes or decodes a Parse wire value.
"""
