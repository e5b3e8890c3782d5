"""mkdocs hooks (mkdocs.yml `hooks:`): render the report before each build, so that plain
`mkdocs build` and `mkdocs serve` work. The code lives in generator.site.hook."""

from generator.site.hook import on_build_error, on_config, on_pre_build, on_serve, on_shutdown  # noqa: F401
