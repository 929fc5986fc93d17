"""segdoctor fix: write a repaired copy of a dataset from the findings of check-data, then re-check it."""
