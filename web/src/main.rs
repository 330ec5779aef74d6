//! Mounts the feed page; everything else is in the library.

fn main() {
    // A panic's message and place in the console, in debug builds (`trunk serve`): the release
    // wasm is built with panic = "abort" and shows only "unreachable" and the wasm stack, as
    // the hook and its formatting are ~0.5 KB of the 150 KB budget.
    #[cfg(debug_assertions)]
    std::panic::set_hook(Box::new(|info| web_sys::console::error_1(&info.to_string().into())));
    // The static "loading" line in index.html stays only if this never runs.
    if let Some(boot) =
        web_sys::window().and_then(|window| window.document()).and_then(|document| document.get_element_by_id("boot"))
    {
        boot.remove();
    }
    leptos::mount::mount_to_body(reco_web::App);
}
