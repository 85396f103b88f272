//! Loopback ports: free ones, and whether a server on one is up.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A free port on `127.0.0.1` (bound, then released: another process may take it before
/// it is used, so a server that cannot listen on it is best retried on another).
///
/// # Errors
///
/// When no port can be bound.
pub fn free_port() -> io::Result<u16> {
    Ok(free_ports::<1>()?[0])
}

/// `N` distinct free ports on `127.0.0.1` (every socket held open while choosing).
///
/// # Errors
///
/// When no port can be bound.
pub fn free_ports<const N: usize>() -> io::Result<[u16; N]> {
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        *port = listener.local_addr()?.port();
        listeners.push(listener);
    }
    Ok(ports)
}

/// Whether something accepts TCP connections at `addr` (within one second).
pub fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// The status code of `GET path` on `addr` over HTTP/1.1, if an HTTP answer comes within
/// `timeout` (any status: a server that answers 400 to `/` is up).
pub fn http_status(addr: SocketAddr, path: &str, timeout: Duration) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    status_code(&head)
}

/// The status of an HTTP/1.x status line (`HTTP/1.1 200 OK`).
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split(' ');
    words.next()?.strip_prefix("HTTP/1.")?;
    let code = words.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let ports = free_ports::<3>().expect("ports");
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
        for port in ports {
            assert_ne!(port, 0);
            TcpListener::bind(("127.0.0.1", port)).expect("free");
        }
    }

    #[test]
    fn an_http_answer_is_read_and_a_closed_port_is_none() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut request = [0u8; 512];
            let n = stream.read(&mut request).expect("read");
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .expect("write");
            request
        });
        assert_eq!(
            http_status(addr, "/moto-api/", Duration::from_secs(5)),
            Some(400)
        );
        let request = server.join().expect("server");
        assert!(
            request.starts_with("GET /moto-api/ HTTP/1.1\r\n"),
            "{request}"
        );
        let closed = SocketAddr::from(([127, 0, 0, 1], free_port().expect("port")));
        assert!(!accepts(closed));
        assert_eq!(http_status(closed, "/", Duration::from_secs(1)), None);
    }

    #[test]
    fn a_listening_port_accepts() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        assert!(accepts(listener.local_addr().expect("addr")));
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 404 Not Found\r\n"), Some(404));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 20"), None);
        assert_eq!(status_code(b""), None);
    }
}
