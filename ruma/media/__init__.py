"""The media repository: uploads, downloads, thumbnails, remote media and URL previews."""
