//! Layer decompression chosen by media type, and by magic bytes when the
//! media type does not say (docker-save layers, `application/octet-stream`).
