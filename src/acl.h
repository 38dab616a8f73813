/* acl: CIDR allow-lists over IPv4 and IPv6. Pure. An acl is immutable once
 * built, so any thread may match against it concurrently. */
#ifndef SLHOOKD_ACL_H
#define SLHOOKD_ACL_H

#include <stdbool.h>
#include <sys/socket.h>

struct acl;

/* New empty list (matches nothing). */
struct acl *acl_new(void);
/* Free; NULL-safe; returns NULL. */
struct acl *acl_free(struct acl *a);
/* Add one entry: "a.b.c.d[/n]", "v6[/n]" or "*" (anyone). Returns 0, or
 * -EINVAL with *reterr set to an allocated message naming the bad text. */
int acl_add(struct acl *a, const char *text, char **reterr);
/* Add every white-space separated entry of list. Same errors as acl_add. */
int acl_add_list(struct acl *a, const char *list, char **reterr);
/* Whether the address matches an entry. IPv4-mapped IPv6 addresses
 * (::ffff:a.b.c.d) are matched as the IPv4 address they carry. */
bool acl_match(const struct acl *a, const struct sockaddr *sa);
/* Number of entries. */
size_t acl_count(const struct acl *a);

/* Format the address of sa (without port) into out; IPv4-mapped IPv6 as IPv4. */
#define ACL_ADDR_LEN 64
void acl_format_addr(const struct sockaddr *sa, char out[ACL_ADDR_LEN]);

#endif
