"""The reference agent service, laid out like the production app it reproduces.

``app.py`` is the Flask app; ``agent.py``, ``mcp_client.py``, ``browser.py`` and
``context_manager.py`` hold the five leak sources, each behind a small seam
chosen by :mod:`api.config`; ``middleware/`` and ``utils/`` wire memwarden in.
"""
