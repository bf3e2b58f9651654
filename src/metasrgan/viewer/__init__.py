"""A local web viewer: zoom an MRI slice from x1 to x4 with Meta-SRGAN and bicubic side by side.

``metasrgan serve`` runs :func:`metasrgan.viewer.server.create_app` with uvicorn.
"""
