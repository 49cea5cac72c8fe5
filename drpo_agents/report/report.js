
(function () {
  var details = document.querySelectorAll('.cand-detail');
  var nodes = document.querySelectorAll('g.node[data-cand]');
  function show(key) {
    details.forEach(function (d) { d.hidden = d.id !== 'cand-' + key; });
    nodes.forEach(function (n) { n.classList.toggle('selected', n.getAttribute('data-cand') === key); });
  }
  nodes.forEach(function (node) {
    var key = node.getAttribute('data-cand');
    node.addEventListener('click', function () { show(key); });
    node.addEventListener('keydown', function (event) {
      if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); show(key); }
    });
  });
  var fit = document.getElementById('tree-fit');
  var scroller = document.getElementById('tree-scroll');
  if (fit && scroller) {
    fit.addEventListener('click', function () {
      var on = scroller.classList.toggle('fit');
      fit.textContent = on ? 'Actual size' : 'Fit to width';
    });
  }
  var charts = Array.prototype.filter.call(document.querySelectorAll('svg.chart'), function (svg) {
    return svg.querySelector('.mark') !== null;
  });
  var drawn = 0;
  charts.forEach(function (svg) {
    var marks = svg.querySelectorAll('.mark');
    var visible = 0;
    marks.forEach(function (mark) {
      var box = mark.getBBox();
      if (box.width > 0 || box.height > 0) { visible += 1; }
    });
    var outer = svg.getBoundingClientRect();
    if (visible > 0 && outer.width > 0 && outer.height > 0) { drawn += 1; }
  });
  document.body.setAttribute('data-charts', String(charts.length));
  document.body.setAttribute('data-charts-drawn', String(drawn));
})();
