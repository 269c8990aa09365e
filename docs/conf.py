"""Sphinx configuration of ipamkit's documentation."""

from importlib.metadata import version as _version

from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective

project = "ipamkit"
author = "the ipamkit authors"
copyright = "2026, the ipamkit authors"
release = _version("ipamkit")
version = release

# Plain reST docstrings, so autodoc needs no napoleon. No intersphinx: the build
# must not need the network.
extensions = ["sphinx.ext.autodoc"]

html_theme = "furo"
html_title = f"ipamkit {release}"

exclude_patterns = ["_build"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}

# Every cross-reference must resolve, except to the standard library (which
# intersphinx would link, if the build could reach the network).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(ipaddress|collections\.abc|typing|enum|abc|pluggy)\..*"),
    (r"py:.*", r"(IPv4|IPv6)(Address|Network|Interface)|Mapping|Collection|Iterable"),
    (r"py:.*", r"str|bool|int|object|None|Exception|TypeError|dict|tuple|list|set|Enum"),
]

# ipamkit re-exports names defined in private modules. autodoc looks for a
# constant's "#:" comment only in the module it is documented under, and falls
# back to the docstring of the value's type (str's, for a str), so the comment is
# fetched from the module that defines the name.
_DEFINING_MODULES = ("ipamkit._contract", "ipamkit._discovery", "ipamkit._hookspecs")


# The signature is the one Sphinx calls the event handler with.
def _comment_where_defined(app, what, name, obj, options, lines):  # noqa: PLR0917
    if what != "data" or not name.startswith("ipamkit."):
        return
    attribute = name.rpartition(".")[2]
    for module in _DEFINING_MODULES:
        comment = ModuleAnalyzer.for_module(module).find_attr_docs().get(("", attribute))
        if comment:
            lines[:] = list(comment)
            return


class ConformanceClauses(SphinxDirective):
    """``.. conformance-clauses::`` lists the suite's clauses from its own data."""

    def run(self):
        # Imported here: only the page with the directive needs the suite.
        from ipamkit_conformance import CLAUSES  # noqa: PLC0415

        lines = []
        for clause in CLAUSES:
            lines += [f"``{clause.id}``", f"    **{clause.title}.** {clause.text}", ""]
            conditions = [f"``{feature}``" for feature in sorted(clause.needs)]
            if clause.reading is not None:
                conditions.append(f"the ``{clause.reading}`` pool reading")
            if conditions:
                lines += [f"    Applies to a driver that declares {', '.join(conditions)}.", ""]
        return self.parse_text_to_nodes("\n".join(lines))


def setup(app):
    app.connect("autodoc-process-docstring", _comment_where_defined)
    app.add_directive("conformance-clauses", ConformanceClauses)
