//! Periodic site reports: HTML with a print stylesheet, PDF through headless Chromium.
