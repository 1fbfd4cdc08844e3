"""PostgreSQL's ``pgoutput`` logical-decoding output: the protocol messages and their parser
(``messages``), column types and value conversion (``values``), row changes decoded against
their relation (``decode``)."""
