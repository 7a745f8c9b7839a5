// Progressive enhancement for the card page: copy buttons and a live countdown. The page works without it.
document.querySelectorAll("button.copy").forEach(function (button) {
  button.addEventListener("click", function () {
    var text = document.getElementById(button.dataset.copy).textContent.replace(/\s+/g, "");
    navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
  });
});
var countdown = document.getElementById("countdown");
if (countdown) {
  // Counted from the server's own clock (data-left), so a sandbox clock that was moved still shows the truth.
  var end = Date.now() + 1000 * Number(countdown.dataset.left);
  var tick = function () {
    var left = Math.max(0, Math.floor((end - Date.now()) / 1000));
    var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    countdown.textContent = h + " h " + String(m).padStart(2, "0") + " min " + String(s).padStart(2, "0") + " s left";
  };
  tick();
  setInterval(tick, 1000);
}
