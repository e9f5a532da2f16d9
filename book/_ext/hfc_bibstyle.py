"""A pybtex style whose bibliography labels match the in-text author-year citations.

Sphinx-bibtex's default ``alpha`` labels ("[MNG+21]") do not match citations rendered with
``bibtex_reference_style: author_year`` ("Ma et al., 2021"). This style labels entries
"Ma et al., 2021" and sorts them by author, year and title. Selected in _config.yml with
``bibtex_default_style: hfc_author_year``.
"""

from __future__ import annotations

import string
from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting import BaseSortingStyle


def _last_name(person) -> str:
    return " ".join(person.last_names).replace("{", "").replace("}", "")


def author_year_label(entry) -> str:
    """ "Krizhevsky, 2009", "Carlini and Wagner, 2017" or "Ma et al., 2021" (no year: no ", year")."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_last_name(p) for p in persons if _last_name(p) != "others"]
    truncated = any(_last_name(p) == "others" for p in persons)
    if not names:
        who = entry.fields.get("key", entry.key)
    elif len(names) == 1 and not truncated:
        who = names[0]
    elif len(names) == 2 and not truncated:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    year = entry.fields.get("year")
    return f"{who}, {year}" if year else who


class AuthorYearLabelStyle(BaseLabelStyle):
    """Author-year labels; equal labels get a, b, ... in sorted order."""

    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [author_year_label(e) for e in entries]
        counts = Counter(labels)
        seen: Counter = Counter()
        for label in labels:
            if counts[label] > 1:
                suffix = string.ascii_lowercase[seen[label]]
                seen[label] += 1
                label += suffix
            yield label


class FirstAuthorYearSortingStyle(BaseSortingStyle):
    """Sort by first author's last name, then year, then title (as the labels read)."""

    def sorting_key(self, entry):
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        first = _last_name(persons[0]).lower() if persons else entry.key.lower()
        return (first, entry.fields.get("year", ""), entry.fields.get("title", "").lower())


class AuthorYearStyle(UnsrtStyle):
    default_label_style = "hfc_author_year"
    default_sorting_style = "hfc_first_author_year"


register_plugin("pybtex.style.labels", "hfc_author_year", AuthorYearLabelStyle)
register_plugin("pybtex.style.sorting", "hfc_first_author_year", FirstAuthorYearSortingStyle)
register_plugin("pybtex.style.formatting", "hfc_author_year", AuthorYearStyle)


def setup(app):
    return {"parallel_read_safe": True, "parallel_write_safe": True}
