//! Finding OpenVINO's C library (`libopenvino_c.so`), which the `openvino` crate opens at run
//! time, in the places every engine looks (`embedrt_backend_core::library`): the `library`
//! option, `OPENVINO_LIBRARY`, `.assets/openvino/` (where `scripts/setup.sh` puts the libraries
//! of the PyPI `openvino` wheel), the `openvino` package of the `python3` on `PATH`, the system.

use std::path::Path;

use embedrt_backend_core::library::LibraryPlaces;

/// Where OpenVINO's C library may be.
const PLACES: LibraryPlaces = LibraryPlaces {
    what: "OpenVINO's C library",
    file: "libopenvino_c.so",
    env: "OPENVINO_LIBRARY",
    assets: &[".assets/openvino"],
    python_package: ("openvino", "libs"),
    hint: "Run scripts/setup.sh, `pip install openvino`, set OPENVINO_LIBRARY, or give the \
           backend's `library` option",
};

/// Refuses a library with TBB's NUMA binding beside it (the wheel's own folder): TBB opens
/// `libtbbbind` and hwloc with a symbol scope of their own, so hwloc frees with glibc's `free`
/// what the process's allocator (jemalloc in `embedrt`) allocated, and the process aborts.
fn refuse_numa_binding(library: &Path) -> Result<(), String> {
    let folder = library.parent().filter(|p| !p.as_os_str().is_empty());
    let Some(entries) = folder.and_then(|folder| std::fs::read_dir(folder).ok()) else {
        return Ok(());
    };
    let binding = entries.filter_map(Result::ok).any(|entry| {
        entry
            .file_name()
            .to_string_lossy()
            .starts_with("libtbbbind")
    });
    if binding {
        return Err(
            "its folder holds TBB's NUMA binding (libtbbbind), which aborts a process \
                    whose allocator is not glibc's (embedrt's is jemalloc); use the copy \
                    scripts/setup.sh makes in .assets/openvino, which leaves it out"
                .into(),
        );
    }
    Ok(())
}

/// Opens OpenVINO's C library from the first place that has one that loads, and logs where it
/// came from. The library stays open for the life of the process (the `openvino` crate keeps
/// one), so the first load decides.
///
/// # Errors
///
/// When no place has one: every place tried and why it failed, and how to get the library.
pub fn load(option: Option<&Path>) -> Result<(), String> {
    let found = PLACES.find(option, |path| {
        refuse_numa_binding(path)?;
        openvino_sys::library::load_from(path)?;
        // Opening is not enough: a library of the wrong kind fails here, when first used.
        openvino::Core::new().map(drop).map_err(|e| e.to_string())
    })?;
    tracing::info!(
        library = %found.path.display(),
        found_in = %found.place,
        "OpenVINO loaded"
    );
    Ok(())
}
