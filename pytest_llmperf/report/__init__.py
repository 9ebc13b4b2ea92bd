"""Reports: the JSON entry per result, junit properties, markdown, the terminal table and
charts."""
