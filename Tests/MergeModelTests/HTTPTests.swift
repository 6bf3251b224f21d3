import CHTTP
import MergeHub
import MergeModel
import Testing
import _TestSupport

/// merge's HTTP client below the Hub: libcurl opened on first use, the answer's headers read as
/// they arrive.
struct HTTPTests {
  /// `lines` read in order, as one response's headers (and its redirects') arrive.
  func read(_ lines: [String]) -> merge_http_result {
    var result = merge_http_result()
    for line in lines {
      line.withCString { merge_http_header_line($0, line.utf8.count, &result) }
    }
    return result
  }

  func errorCode(_ result: merge_http_result) -> String {
    withUnsafeBytes(of: result.error_code) {
      String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
    }
  }

  @Test("status lines of HTTP/1.1 and HTTP/2, and X-Error-Code in any case, trimmed")
  func headerLines() {
    let gated = read(["HTTP/1.1 403 Forbidden\r\n", "x-error-code:  GatedRepo \r\n", "\r\n"])
    #expect(gated.status == 403)
    #expect(errorCode(gated) == "GatedRepo")
    let two = read(["HTTP/2 404\r\n", "X-Error-Code: EntryNotFound\r\n"])
    #expect(two.status == 404)
    #expect(errorCode(two) == "EntryNotFound")
    // A redirect's headers are followed by the final answer's: its status, and no error code
    // unless it has its own.
    let redirected = read([
      "HTTP/1.1 302 Found\r\n", "X-Error-Code: Stale\r\n", "Location: /x\r\n", "\r\n",
      "HTTP/1.1 206 Partial Content\r\n", "Content-Range: bytes 0-9/100\r\n", "\r\n",
    ])
    #expect(redirected.status == 206)
    #expect(errorCode(redirected) == "")
    // Other headers, and names that only start alike, leave it alone.
    let other = read(["HTTP/1.1 200 OK\r\n", "X-Error-Codes: no\r\n", "X-Error: no\r\n"])
    #expect(other.status == 200)
    #expect(errorCode(other) == "")
    // A value longer than the field is cut, still terminated.
    let long = read(["HTTP/1.1 500\r\n", "X-Error-Code: " + String(repeating: "A", count: 300)])
    #expect(errorCode(long) == String(repeating: "A", count: 127))
  }

  @Test("libcurl loads when asked, and a refused connection is said in fixed words")
  func refused() throws {
    #expect(merge_http_load() == nil)
    // Port 1 of the loopback address: nothing listens there.
    let client = HubClient(settings: HubSettings(endpoint: "http://127.0.0.1:1"))
    let repository = try #require(HubRepositoryID("tiny-org/llama-base"))
    do {
      _ = try client.info(repository, revision: "main")
      Issue.record("the request succeeded")
    } catch {
      #expect(
        error.description
          == "'tiny-org/llama-base' on the Hub: cannot read http://127.0.0.1:1/api/models/tiny-org/llama-base/revision/main?blobs=true: the server refused the connection"
      )
    }
  }

  @Test(
    "a redirect to another protocol than http and https is refused, not followed",
    .enabled(if: HubServer.available, "needs python3 for the local Hub server"))
  func redirectToFile() throws {
    let dir = TemporaryDirectory()
    let secret = dir.write("secret.txt", "not for the Hub")
    let server = try HubServer(
      repos: ["tiny-org/llama-base": (Repository.tinyLlama + "/base", false, false)],
      faults: ["redirect_to": ["tiny-org/llama-base/config.json": "file://" + secret]], in: dir)
    let client = HubClient(settings: HubSettings(endpoint: server.endpoint))
    let repository = try #require(HubRepositoryID("tiny-org/llama-base"))
    do {
      let bytes = try client.bytes(repository, commit: "main", file: "config.json")
      Issue.record("the redirect was followed: \(bytes.count) bytes")
    } catch {
      #expect(
        error.description.contains(
          "cannot read \(server.endpoint)/tiny-org/llama-base/resolve/main/config.json"))
      #expect(error.description.lowercased().contains("protocol"), "\(error.description)")
    }
  }
}
