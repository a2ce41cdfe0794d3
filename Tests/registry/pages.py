"""A minimal client for the registry's server-rendered pages: HTML forms and links (html.parser), a cookie jar of
one session, urlencoded and multipart form posts. Enough to sign in with a token, crawl the pages and submit
every form with and without its CSRF token (test_security.py); no browser (test_browser.py is the real one)."""
import html.parser
import http.client
import secrets
import urllib.parse


class Form:
    def __init__(self, action, method, enctype, page):
        self.action = action
        self.method = method
        self.enctype = enctype
        self.page = page
        self.inputs = []   # (name, type, value)

    def fields(self):
        return [(n, v) for n, t, v in self.inputs if n and t not in ("submit", "button", "file")]

    def file_fields(self):
        return [n for n, t, v in self.inputs if n and t == "file"]

    def token_field(self):
        """The name of the field a sign-in form takes the token in (a password input, or a name with "token")."""
        names = [n for n, t, v in self.inputs if n and (t == "password" or "token" in n.lower())]
        return names[0] if names else None

    def csrf_names(self):
        return [n for n, t, v in self.inputs if n and "csrf" in n.lower()]

    def __repr__(self):
        return f"<form {self.method} {self.action} on {self.page}>"


class _Parser(html.parser.HTMLParser):
    def __init__(self, page):
        super().__init__()
        self.page = page
        self.forms = []
        self.links = []
        self.current = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            action = urllib.parse.urljoin(self.page, a.get("action") or self.page)
            self.current = Form(action, (a.get("method") or "get").lower(),
                                (a.get("enctype") or "application/x-www-form-urlencoded").lower(), self.page)
            self.forms.append(self.current)
        elif tag in ("input", "textarea", "select", "button") and self.current is not None:
            itype = (a.get("type") or ("submit" if tag == "button" else "text")).lower()
            self.current.inputs.append((a.get("name"), itype, a.get("value") or ""))
        elif tag == "a" and a.get("href"):
            self.links.append(urllib.parse.urljoin(self.page, a["href"]))

    def handle_endtag(self, tag):
        if tag == "form":
            self.current = None


def parse(page, text):
    p = _Parser(page)
    p.feed(text)
    return p.forms, p.links


class Browser:
    def __init__(self, port):
        self.port = port
        self.cookies = {}
        self.set_cookie_headers = []

    def request(self, method, path, body=None, content_type=None, cookies=True, follow=False):
        for _ in range(5):
            headers = {"Connection": "close"}
            if cookies and self.cookies:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            if content_type:
                headers["Content-Type"] = content_type
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read().decode("utf-8", errors="replace")
                for k, v in resp.getheaders():
                    if k.lower() == "set-cookie":
                        self.set_cookie_headers.append(v)
                        name, _, rest = v.partition("=")
                        value = rest.split(";")[0]
                        if cookies:
                            self.cookies[name.strip()] = value
                location = resp.getheader("Location")
            finally:
                conn.close()
            if follow and resp.status in (301, 302, 303, 307) and location:
                path = urllib.parse.urlsplit(urllib.parse.urljoin(path, location))
                path = path.path + (("?" + path.query) if path.query else "")
                method, body, content_type = "GET", None, None
                continue
            return resp.status, data, location
        return resp.status, data, location

    def get(self, path):
        return self.request("GET", path, follow=True)

    def sign_in(self, token, path="/"):
        """GET `path` (the first page redirects to the sign-in page when signed out), fill its sign-in form with
        `token` and post it. Returns (status, form): the post's status and the form, or the GET's status and None
        when the page offers no sign-in form."""
        status, text, _ = self.get(path)
        forms, _ = parse(path, text)
        form = next((f for f in forms if f.method == "post" and f.token_field()), None)
        if form is None:
            return status, None
        status, _, _ = self.submit(form, self.sign_in_values(form, token))
        return status, form

    @staticmethod
    def sign_in_values(form, token):
        """The sign-in form's fields with `token` in its token field (for a post of one's own, e.g. a wrong token)."""
        name = form.token_field()
        return [(n, v) for n, v in form.fields() if n != name] + [(name, token)]

    @staticmethod
    def encode(form, values, files=None):
        if form.enctype.startswith("multipart/"):
            boundary = "----cellprov" + secrets.token_hex(8)
            parts = []
            for n, v in values:
                parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n{v}\r\n')
            for n in (files or form.file_fields()):
                parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{n}"; filename="x.csv"\r\n'
                             f'Content-Type: text/csv\r\n\r\niccid,imsi,status\r\n')
            body = ("".join(parts) + f"--{boundary}--\r\n").encode()
            return body, f"multipart/form-data; boundary={boundary}"
        return urllib.parse.urlencode(values).encode(), "application/x-www-form-urlencoded"

    def submit(self, form, values, cookies=True):
        body, ctype = self.encode(form, values)
        u = urllib.parse.urlsplit(form.action)
        return self.request("POST", u.path + (("?" + u.query) if u.query else ""), body, ctype, cookies=cookies)
