"""The contract between the stream, the models and the store.

Nothing here imports torch or faust: pydantic events and outputs (``events``, ``outputs``),
topic names and keys (``topics``), ClickHouse DDL (``ddl``), the on-disk dataset format
(``dataset``) and the fixed sizes every component agrees on (``limits``).
"""
