import { describe, expect, it } from 'vitest';
import { applyChanges, splitWords } from './changes.js';

describe('commit --change', () => {
  const base = { Env: ['PATH=/bin', 'A=1'], Cmd: ['sh'], WorkingDir: '/srv', Labels: { keep: 'yes' } };

  it('applies the Dockerfile forms in order', () => {
    const c = applyChanges(base, [
      'CMD ["httpd", "-f"]',
      'ENV A=2 B="two words"',
      'ENV LEGACY some value',
      'EXPOSE 80 53/udp',
      'LABEL version=1.0 "quoted key"=x',
      'WORKDIR www',
      'USER nobody',
      'VOLUME ["/data"]',
      'STOPSIGNAL SIGQUIT',
    ]);
    expect(c.Cmd).toEqual(['httpd', '-f']);
    expect(c.Env).toEqual(['PATH=/bin', 'A=2', 'B=two words', 'LEGACY=some value']);
    expect(c.ExposedPorts).toEqual({ '80/tcp': {}, '53/udp': {} });
    expect(c.Labels).toEqual({ keep: 'yes', version: '1.0', 'quoted key': 'x' });
    expect(c.WorkingDir).toBe('/srv/www');
    expect(c.User).toBe('nobody');
    expect(c.Volumes).toEqual({ '/data': {} });
    expect(c.StopSignal).toBe('SIGQUIT');
    expect(base.Env).toEqual(['PATH=/bin', 'A=1']); // the input is not changed
  });

  it('turns the shell form into sh -c, and an ENTRYPOINT drops the inherited CMD', () => {
    expect(applyChanges(base, ['CMD echo $HOME']).Cmd).toEqual(['/bin/sh', '-c', 'echo $HOME']);
    const c = applyChanges(base, ['entrypoint ["/bin/app"]']);
    expect(c.Entrypoint).toEqual(['/bin/app']);
    expect(c.Cmd).toBeNull();
  });

  it('refuses what commit cannot take, with docker message', () => {
    expect(() => applyChanges(base, ['RUN rm -rf /'])).toThrow('RUN is not a valid change command');
    expect(() => applyChanges(base, ['EXPOSE eighty'])).toThrow('invalid containerPort: eighty');
    expect(() => applyChanges(base, ['ENV ="x"'])).toThrow(/names can not be blank/);
    expect(() => applyChanges(base, ['LABEL a="unterminated'])).toThrow(/unterminated quote/);
  });

  it('splits words as a shell would for key=value lists', () => {
    expect(splitWords(`a=1 b="x y" c='q "z"' d=e\\ f`)).toEqual(['a=1', 'b=x y', `c=q "z"`, 'd=e f']);
  });
});
