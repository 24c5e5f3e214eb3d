"""The domain errors. The CLI and the app turn these into plain messages, never tracebacks."""


class SscpRagError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(SscpRagError):
    """A setting has an invalid value."""


class PdfError(SscpRagError):
    """A PDF could not be read; the message is a one-line reason fit for a summary."""


class CorpusError(SscpRagError):
    """The corpus folder or its manifest is unusable."""


class IndexMissingError(SscpRagError):
    """No index has been built where one was expected."""


class IndexStaleError(SscpRagError):
    """The index was built with different settings or code and must be rebuilt."""


class IndexCorruptError(SscpRagError):
    """The index files are damaged or inconsistent."""


class QueryError(SscpRagError):
    """A query or filter value is invalid (empty query, unknown review type, ...)."""


class LLMError(SscpRagError):
    """The optional LLM endpoint failed, timed out or answered garbage."""


class FetchError(SscpRagError):
    """Fetching documents from the web failed."""


class EvalError(SscpRagError):
    """An evaluation set or BEIR folder is malformed."""
