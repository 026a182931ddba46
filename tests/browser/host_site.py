"""The host site the browser tests load: plain, hostile and Chinese pages.

Its source is written into the live server's working directory as the host
application's module, so it must import nothing from the tests.
"""

HOST_MODULE = r'''
PLAIN_STYLE = (
    "body{margin:0;font:16px/1.5 system-ui,sans-serif;background:#f6f4ef}main{padding:40px}"
)
# Host CSS that styles every element the widget is made of, as hard as CSS allows.
HOSTILE_STYLE = """
*{box-sizing:content-box!important;transition:none!important}
div,button,input,textarea,section,span,p,h2,h3,form,header,label,a,svg,ls-widget{
  all:unset;display:block!important;background:#ff00aa!important;color:#00ff00!important;
  font:italic 31px/3 Georgia,serif!important;border:9px dashed red!important;
  padding:37px!important;margin:11px!important;width:333px!important;height:77px!important;
  position:static!important;opacity:.5!important;transform:rotate(3deg)!important;
  visibility:visible!important;z-index:1!important}
button:focus,input:focus{outline:20px solid orange!important}
"""
SCRIPT = (
    "<script>window.hostScriptRan = true;"
    " document.getElementById('h').textContent += ' ok';</script>"
)


def page(lang, title, style, body):
    return (
        "<!doctype html><html lang='%s'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<link rel='icon' href='data:,'><title>%s</title><style>%s</style></head>"
        "<body><main><h1 id='h'>%s</h1>%s</main>%s</body></html>"
        % (lang, title, style, title, body, SCRIPT)
    ).encode()


PAGES = {
    "/": page("en", "Kettle & Leaf", PLAIN_STYLE, "<p>Small-batch tea.</p>"),
    "/pricing": page("en", "Pricing", PLAIN_STYLE, "<p>Plans from 9 EUR.</p>"),
    "/hostile": page(
        "en", "Hostile", HOSTILE_STYLE, "<div><button>host button</button><input></div>"
    ),
    "/zh": page("zh-CN", "茶叶店", PLAIN_STYLE, "<p>欢迎光临。</p>"),
}


def app(environ, start_response):
    body = PAGES.get(environ.get("PATH_INFO", ""))
    if body is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''
