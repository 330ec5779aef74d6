//! Mounts the feed page; everything else is in the library.

fn main() {
    console_error_panic_hook::set_once();
    // The static "loading" line in index.html stays only if this never runs.
    if let Some(boot) =
        web_sys::window().and_then(|window| window.document()).and_then(|document| document.get_element_by_id("boot"))
    {
        boot.remove();
    }
    leptos::mount::mount_to_body(reco_web::App);
}
