"""One module per file format; :func:`metasrgan.data.io.read_image` picks the reader.

Every reader checks the file (a regular, readable file), the header's declared size against
the voxel limit and the geometry before decoding voxels, and raises
:class:`~metasrgan.data.readers.common.ImageReadError` saying what is wrong.
"""
