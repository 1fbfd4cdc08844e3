"""Avro for the hub's Kafka messages, in one package (SPEC §3).

- :mod:`hub.avro.codec`: the shipped schemas, single-object encoding and decoding (the reference).
- :mod:`hub.avro.writer`: a compiled writer for the hot paths, byte-identical to the codec.
- :mod:`hub.avro.reader`: a compiled ``ChangeEvent`` reader, record-identical to the codec.
- :mod:`hub.avro.compatibility`: the check that current schemas read every released version.
"""
