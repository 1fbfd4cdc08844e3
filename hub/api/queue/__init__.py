"""The mismatch queue as stewards work it: filters, pages, detail, actions, export."""
