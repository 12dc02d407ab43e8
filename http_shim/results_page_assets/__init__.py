"""The results page's files (HTML, CSS, ES modules), served by ``http_shim.results_page``; no Python here."""
