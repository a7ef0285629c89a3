//! Running a loaded tract plan safely: the one home of what the forecasting
//! models and the optimization surrogates both need (a tract panic caught
//! and turned into an error, the first output read as a flat `f32` array).

use tract_onnx::prelude::*;

/// A loaded, optimised ONNX graph.
pub(crate) type Plan = std::sync::Arc<TypedRunnableModel>;

/// Run `plan` on one input tensor; the first output, row-major. A graph
/// that loaded can still panic inside tract at run time: that is an error
/// here, never a crash of the caller.
pub(crate) fn run_flat(plan: &Plan, input: Tensor) -> Result<Vec<f32>, String> {
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        plan.run(tvec!(input.into()))
    }))
    .map_err(|p| format!("the model failed inside tract: {}", panic_text(&*p)))?
    .map_err(|e| format!("{e:#}"))?;
    let view = out
        .first()
        .ok_or_else(|| "no output".to_owned())?
        .to_plain_array_view::<f32>()
        .map_err(|e| e.to_string())?;
    Ok(view.iter().copied().collect())
}

/// The text of a panic payload.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "no message".to_owned()
    }
}
