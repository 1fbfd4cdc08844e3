// Registry Hub UI: select-all for bulk actions and confirmation of risky buttons.
// Everything works without it; it only saves clicks.
document.addEventListener("DOMContentLoaded", () => {
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", () => {
      document.querySelectorAll('#bulk input[name="ids"]').forEach((box) => {
        box.checked = all.checked;
      });
    });
  }
  document.querySelectorAll("button[data-confirm]").forEach((button) => {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  });
});
