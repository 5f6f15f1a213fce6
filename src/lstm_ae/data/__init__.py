"""The data room: the official archive (download, safe reading), row sequences, the data set, corruptions."""
