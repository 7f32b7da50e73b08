"""Everything made from records: frames -> comparisons -> claims -> reports, and `budget`.

Reads records and predict/, never run/."""
