def init_copy_command(files, src="/airpack/model", dst="/weights"):
    return ("sh", "-c", "TEMP", "sh", src, dst, *[x for f in files for x in f])
