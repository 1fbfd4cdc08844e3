"""Demo data: a generated population registry and four sector databases with known mismatches."""
